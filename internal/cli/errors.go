package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/apierrors"
)

// usageError is a mistake in how a command was invoked; it is printed with a pointer to the
// command's help.
type usageError struct {
	msg     string
	cmdPath string
}

func (e *usageError) Error() string { return e.msg }

func usageErrorf(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), cmdPath: cmd.CommandPath()}
}

// reportedError means the command already printed its errors (apply and delete go on after a
// failed object and report each one as it happens); only the exit code is left to set.
type reportedError struct{ count int }

func (e *reportedError) Error() string { return fmt.Sprintf("%d error(s) occurred", e.count) }

// errorReporter prints errors as they happen and remembers whether any did.
type errorReporter struct {
	w      io.Writer
	server string
	count  int
}

func (r *errorReporter) report(err error) {
	r.count++
	fmt.Fprintln(r.w, formatError(r.server, err))
}

// result is nil when nothing was reported, else a reportedError.
func (r *errorReporter) result() error {
	if r.count == 0 {
		return nil
	}
	return &reportedError{count: r.count}
}

// reportError prints err as kubectl would and returns the exit code.
func reportError(w io.Writer, server string, err error) int {
	var rep *reportedError
	if errors.As(err, &rep) {
		return 1
	}
	var exit exitCodeError
	if errors.As(err, &exit) {
		// The remote command's status, as kubectl exec passes it on.
		fmt.Fprintln(w, err.Error())
		return exit.code
	}
	fmt.Fprintln(w, formatError(server, err))
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(w, "See '%s --help' for usage.\n", ue.cmdPath)
	}
	return 1
}

// formatError renders an API error as `Error from server (NotFound): pods "web" not found`, a
// refused connection as kubectl's hint about --server, and anything else as `error: ...`.
func formatError(server string, err error) string {
	var se *apierrors.StatusError
	if !errors.As(err, &se) {
		return "error: " + err.Error()
	}
	st := se.Status
	msg := err.Error() // keeps any context wrapped around the StatusError
	if st.GetReason() == apierrors.ReasonServiceUnavail && strings.Contains(st.GetMessage(), "connection refused") {
		return fmt.Sprintf("The connection to the server %s was refused - did you specify the right host or port?", server)
	}
	reason := st.GetReason()
	if reason == "" {
		reason = fmt.Sprintf("%d", st.GetCode())
	}
	return fmt.Sprintf("Error from server (%s): %s", reason, msg)
}
