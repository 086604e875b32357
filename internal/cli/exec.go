package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/client"
)

// exitCodeError makes skiff exit with the remote command's code, as kubectl exec does.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.code)
}

func newExecCommand(o *globalOptions) *cobra.Command {
	var (
		container  string
		stdin, tty bool
	)
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]",
		Short: "Run a command in a container",
		Long: "Run a command in a running container. The apiserver forwards the stream to the kubelet of " +
			"the pod's node (gRPC only).",
		Example: "  skiff exec web-0 -- ls /\n  skiff exec -it web-0 -c shell -- sh",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 || len(args) < 2 {
				return usageErrorf(cmd, "exec needs a pod and, after --, a command: skiff exec POD -- COMMAND [ARG...]")
			}
			name, err := podName(cmd, args[0])
			if err != nil {
				return err
			}
			c, err := client.New(o.server)
			if err != nil {
				return err
			}
			defer c.Close()
			api, err := client.KubeletAPI(c)
			if err != nil {
				return err
			}
			stream, err := api.Exec(cmd.Context())
			if err != nil {
				return apierrors.FromError(err)
			}
			start := &corev1.ExecStart{Namespace: o.namespace, Name: name, Container: container, Command: args[1:], Stdin: stdin, Tty: tty}
			if err := stream.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_Start{Start: start}}); err != nil {
				return apierrors.FromError(err)
			}
			if tty {
				if f, ok := o.streams.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					if old, err := term.MakeRaw(int(f.Fd())); err == nil {
						defer func() { _ = term.Restore(int(f.Fd()), old) }()
					}
					if w, h, err := term.GetSize(int(f.Fd())); err == nil {
						_ = stream.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_Resize{Resize: &corev1.TerminalSize{Width: uint32(w), Height: uint32(h)}}})
					}
				}
			}
			if stdin {
				go func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := o.streams.In.Read(buf)
						if n > 0 {
							if serr := stream.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}); serr != nil {
								return
							}
						}
						if err != nil {
							_ = stream.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_CloseStdin{CloseStdin: true}})
							return
						}
					}
				}()
			}
			for {
				m, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return errors.New("exec: the stream ended without an exit code")
				}
				if err != nil {
					return apierrors.FromError(err)
				}
				if len(m.GetStdout()) > 0 {
					_, _ = o.streams.Out.Write(m.GetStdout())
				}
				if len(m.GetStderr()) > 0 {
					_, _ = o.streams.ErrOut.Write(m.GetStderr())
				}
				if m.ExitCode != nil {
					if code := int(m.GetExitCode()); code != 0 {
						return exitCodeError{code: code}
					}
					return nil
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVarP(&container, "container", "c", "", "the container (needed when the pod has several)")
	f.BoolVarP(&stdin, "stdin", "i", false, "pass stdin to the command")
	f.BoolVarP(&tty, "tty", "t", false, "allocate a terminal for the command")
	return cmd
}
