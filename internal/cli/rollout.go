package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/rollout"
)

// newRolloutCommand is `skiff rollout`: kubectl's rollout subcommands for deployments.
func newRolloutCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout SUBCOMMAND",
		Short: "Manage the rollout of a deployment",
		Long: "Manage the rollout of a deployment: watch it (status), list its revisions (history), go\n" +
			"back to an earlier one (undo), roll its pods again (restart), or hold and release it\n" +
			"(pause, resume).",
		Example: "  skiff rollout status deployment/web\n  skiff rollout undo deployment/web --to-revision=1",
	}
	cmd.AddCommand(newRolloutStatusCommand(o), newRolloutHistoryCommand(o), newRolloutUndoCommand(o),
		newRolloutRestartCommand(o), newRolloutPauseCommand(o, true), newRolloutPauseCommand(o, false))
	return cmd
}

// rolloutTargets parses `deployment/NAME...` or `deployment NAME...` and refuses other kinds.
func rolloutTargets(cmd *cobra.Command, args []string) ([]string, *scheme.Kind, error) {
	ra, err := parseResourceArgs(cmd, scheme.Default(), args)
	if err != nil {
		return nil, nil, err
	}
	if !ra.byName {
		return nil, nil, usageErrorf(cmd, "required resource not specified")
	}
	var names []string
	var k *scheme.Kind
	for _, t := range ra.targets {
		if t.kind.Kind != "Deployment" {
			return nil, nil, fmt.Errorf("no rollout support for %s: only deployments roll out", t.kind.GroupResource())
		}
		k = t.kind
		names = append(names, t.names...)
	}
	return names, k, nil
}

func newRolloutStatusCommand(o *globalOptions) *cobra.Command {
	var watch bool
	var timeout time.Duration
	var revision int64
	cmd := &cobra.Command{
		Use:   "status deployment/NAME",
		Short: "Watch a rollout until it completes",
		Long: "Show the status of a deployment's rollout and, by default, follow it until it completes,\n" +
			"printing each step as kubectl does.",
		Example: "  skiff rollout status deployment/web",
		RunE: func(cmd *cobra.Command, args []string) error {
			names, k, err := rolloutTargets(cmd, args)
			if err != nil {
				return err
			}
			if len(names) != 1 {
				return usageErrorf(cmd, "rollout status takes exactly one deployment")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return rolloutStatus(ctx, o, c, k, names[0], watch, revision)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "follow the rollout until it completes")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	cmd.Flags().Int64Var(&revision, "revision", 0, "wait for this revision (0: the current one)")
	return cmd
}

// rolloutStatus prints the rollout's state, and with watch every change of it until done.
func rolloutStatus(ctx context.Context, o *globalOptions, c client.Interface, k *scheme.Kind, name string, watch bool, revision int64) error {
	obj, err := c.Get(ctx, k, o.namespace, name)
	if err != nil {
		return err
	}
	last := ""
	show := func(d *appsv1.Deployment) (bool, error) {
		msg, done, err := rollout.Status(d, revision)
		if err != nil {
			return false, err
		}
		if msg != last {
			fmt.Fprint(o.streams.Out, msg)
			last = msg
		}
		return done, nil
	}
	if done, err := show(obj.(*appsv1.Deployment)); err != nil || done || !watch {
		return err
	}
	errDone := errors.New("done")
	for {
		err := c.Watch(ctx, k, o.namespace, client.WatchOptions{FieldSelector: "metadata.name=" + name,
			ResourceVersion: obj.GetMetadata().GetResourceVersion()}, func(ev client.WatchEvent) error {
			if ev.Type == "DELETED" {
				return fmt.Errorf("deployment %q was deleted", name)
			}
			obj = ev.Object
			done, err := show(ev.Object.(*appsv1.Deployment))
			if err != nil {
				return err
			}
			if done {
				return errDone
			}
			return nil
		})
		switch {
		case errors.Is(err, errDone):
			return nil
		case ctx.Err() != nil:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out waiting for the condition")
			}
			return ctx.Err()
		case err != nil:
			return err
		}
		// The server ended the watch: read the state again and go on.
		if obj, err = c.Get(ctx, k, o.namespace, name); err != nil {
			return err
		}
		if done, err := show(obj.(*appsv1.Deployment)); err != nil || done {
			return err
		}
	}
}

func newRolloutHistoryCommand(o *globalOptions) *cobra.Command {
	var revision int64
	cmd := &cobra.Command{
		Use:     "history deployment/NAME",
		Short:   "List a deployment's revisions",
		Example: "  skiff rollout history deployment/web\n  skiff rollout history deployment/web --revision=2",
		RunE: func(cmd *cobra.Command, args []string) error {
			names, k, err := rolloutTargets(cmd, args)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, name := range names {
				obj, err := c.Get(cmd.Context(), k, o.namespace, name)
				if err != nil {
					return err
				}
				history, err := rollout.History(cmd.Context(), c, obj.(*appsv1.Deployment))
				if err != nil {
					return err
				}
				if err := printHistory(o, k, name, history, revision); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&revision, "revision", 0, "show the pod template of this revision")
	return cmd
}

func printHistory(o *globalOptions, k *scheme.Kind, name string, history []rollout.Revision, revision int64) error {
	ref := objectRef(k, name)
	if revision > 0 {
		for _, r := range history {
			if r.Number == revision {
				fmt.Fprintf(o.streams.Out, "%s with revision #%d\n", ref, revision)
				d := &describer{tw: tabwriter.NewWriter(o.streams.Out, 0, 8, 2, ' ', 0), now: o.now()}
				describePodTemplate(d, r.ReplicaSet.GetSpec().GetTemplate())
				return d.tw.Flush()
			}
		}
		return fmt.Errorf("unable to find the specified revision")
	}
	fmt.Fprintf(o.streams.Out, "%s \n", ref)
	tw := newTabWriter(o.streams.Out)
	fmt.Fprintln(tw, "REVISION\tCHANGE-CAUSE")
	for _, r := range history {
		fmt.Fprintf(tw, "%s\t%s\n", strconv.FormatInt(r.Number, 10), orNone(r.ChangeCause))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(o.streams.Out)
	return nil
}

func newRolloutUndoCommand(o *globalOptions) *cobra.Command {
	var toRevision int64
	cmd := &cobra.Command{
		Use:   "undo deployment/NAME",
		Short: "Roll back to an earlier revision",
		Long: "Roll a deployment back to its previous revision, or to --to-revision, by putting that\n" +
			"revision's pod template back into the deployment (it becomes the newest revision).",
		Example: "  skiff rollout undo deployment/web\n  skiff rollout undo deployment/web --to-revision=1",
		RunE: func(cmd *cobra.Command, args []string) error {
			names, k, err := rolloutTargets(cmd, args)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
			for _, name := range names {
				res, err := rollout.Undo(cmd.Context(), c, o.namespace, name, toRevision)
				if err != nil {
					rep.report(err)
					continue
				}
				fmt.Fprintf(o.streams.Out, "%s %s\n", objectRef(k, name), res)
			}
			return rep.result()
		},
	}
	cmd.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to roll back to (0: the previous one)")
	return cmd
}

func newRolloutRestartCommand(o *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "restart deployment/NAME",
		Short:   "Roll out a deployment's pods again",
		Long:    "Replace every pod of a deployment with a new one, as a rolling update does, without changing it.",
		Example: "  skiff rollout restart deployment/web",
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachDeployment(cmd, o, args, "restarted", func(ctx context.Context, c client.Interface, name string) error {
				return rollout.Restart(ctx, c, o.namespace, name, o.now())
			})
		},
	}
}

func newRolloutPauseCommand(o *globalOptions, pause bool) *cobra.Command {
	use, short, verb := "resume", "Resume a paused deployment", "resumed"
	if pause {
		use, short, verb = "pause", "Pause a deployment: template changes do not roll out until resumed", "paused"
	}
	return &cobra.Command{
		Use:     use + " deployment/NAME",
		Short:   short,
		Example: "  skiff rollout " + use + " deployment/web",
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachDeployment(cmd, o, args, verb, func(ctx context.Context, c client.Interface, name string) error {
				return rollout.SetPaused(ctx, c, o.namespace, name, pause)
			})
		},
	}
}

// eachDeployment runs fn for each named deployment and prints "deployment.apps/NAME verb".
func eachDeployment(cmd *cobra.Command, o *globalOptions, args []string, verb string, fn func(context.Context, client.Interface, string) error) error {
	names, k, err := rolloutTargets(cmd, args)
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	defer c.Close()
	rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
	for _, name := range names {
		if err := fn(cmd.Context(), c, name); err != nil {
			rep.report(err)
			continue
		}
		fmt.Fprintf(o.streams.Out, "%s %s\n", objectRef(k, name), verb)
	}
	return rep.result()
}
