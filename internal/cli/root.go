// Package cli is the skiff command line: a kubectl-like client of the Skiff API. Every command
// is built by a constructor (no package-level command state), so tests can run any number of
// independent command trees in one process with their own streams.
package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/client"
)

// Version is the client version printed by `skiff version`.
const Version = "v0.1.0-dev"

const (
	defaultServer = "127.0.0.1:9090"
	serverEnv     = "SKIFF_SERVER"
)

// IOStreams are the standard streams a command reads and writes; tests pass buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// globalOptions are the flags every command shares, plus what the commands derive from them.
type globalOptions struct {
	streams        IOStreams
	server         string
	namespace      string
	requestTimeout time.Duration
	// now is the clock ages are computed against; a field so tests can pin it.
	now func() time.Time
}

// explicitNamespace reports whether -n was given on the command line: apply and delete -f only
// refuse a manifest whose namespace differs from the flag when the user actually chose one.
func (o *globalOptions) explicitNamespace(cmd *cobra.Command) bool {
	f := cmd.Flags().Lookup("namespace")
	return f != nil && f.Changed
}

// client connects to --server. Every call made through it is bounded by --request-timeout.
func (o *globalOptions) client() (client.Interface, error) {
	c, err := client.New(o.server)
	if err != nil {
		return nil, err
	}
	if o.requestTimeout <= 0 {
		return c, nil
	}
	return &timeoutClient{Interface: c, timeout: o.requestTimeout}, nil
}

// NewRootCommand builds the skiff command tree. extra commands (such as `skiff up`, which lives
// with the control plane rather than in the client) are added as further subcommands.
func NewRootCommand(streams IOStreams, extra ...*cobra.Command) *cobra.Command {
	o := &globalOptions{streams: streams, now: time.Now}
	server := os.Getenv(serverEnv)
	if server == "" {
		server = defaultServer
	}
	root := &cobra.Command{
		Use:   "skiff",
		Short: "skiff controls a Skiff cluster",
		Long: "skiff controls a Skiff cluster, much as kubectl controls Kubernetes.\n\n" +
			"It talks gRPC to --server, or REST when --server is an http:// or https:// URL.",
		SilenceErrors: true, // Execute prints errors kubectl-style
		SilenceUsage:  true, // a server error is not a reason to print the usage
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf(cmd, "%s", err.Error())
	})

	pf := root.PersistentFlags()
	pf.StringVar(&o.server, "server", server, "address of the API server: host:port for gRPC, or an http(s):// URL for REST (env "+serverEnv+")")
	pf.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of the request")
	pf.DurationVar(&o.requestTimeout, "request-timeout", 30*time.Second, "how long to wait for each request to the server (0: no limit)")

	root.AddCommand(
		newApplyCommand(o),
		newGetCommand(o),
		newDescribeCommand(o),
		newDeleteCommand(o),
		newScaleCommand(o),
		newLogsCommand(o),
		newExecCommand(o),
		newImageCommand(o),
		newRolloutCommand(o),
		newVersionCommand(o),
	)
	root.AddCommand(extra...)
	return root
}

// Execute runs the command tree on args with streams and returns the process exit code. Errors
// are printed here, once, so commands only return them.
func Execute(ctx context.Context, streams IOStreams, args []string, extra ...*cobra.Command) int {
	root := NewRootCommand(streams, extra...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	server, _ := root.PersistentFlags().GetString("server")
	return reportError(streams.ErrOut, server, err)
}

// Main runs skiff with the process's streams; an interrupt cancels the running command.
func Main(args []string, extra ...*cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Execute(ctx, IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, args, extra...)
}

func newVersionCommand(o *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(o.streams.Out, "Client Version: "+Version+"\n")
			return err
		},
	}
}
