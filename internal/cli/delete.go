package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

type deleteOptions struct {
	files          []string
	gracePeriod    int64
	now            bool
	force          bool
	ignoreNotFound bool
	dryRun         string
	cascade        string
}

func newDeleteCommand(o *globalOptions) *cobra.Command {
	d := &deleteOptions{}
	cmd := &cobra.Command{
		Use:   "delete (-f FILENAME | KIND NAME... | KIND/NAME...)",
		Short: "Delete objects by name or by manifest",
		Long: "Delete objects named on the command line or described by manifests (-f).\n\n" +
			"Pods on a node get their grace period to stop; --grace-period overrides it and --now\n" +
			"asks for an immediate, still orderly, stop. --cascade says what happens to the objects'\n" +
			"dependents (a deployment's replica sets, their pods): background (the default) deletes\n" +
			"them after the object, foreground before it, orphan keeps them.",
		Example: "  skiff delete pod web-1\n  skiff delete deployment/web service/web\n  skiff delete -f deploy/examples/web.yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(d.files) > 0 && len(args) > 0 {
				return usageErrorf(cmd, "cannot use names or kinds together with -f")
			}
			if len(d.files) == 0 && len(args) == 0 {
				return usageErrorf(cmd, "you must specify the objects to delete: -f FILENAME, KIND NAME... or KIND/NAME...")
			}
			if d.now && cmd.Flags().Changed("grace-period") {
				return usageErrorf(cmd, "--now and --grace-period cannot be specified together")
			}
			if _, err := parseDryRunFlag(cmd, d.dryRun); err != nil {
				return err
			}
			if _, err := d.propagationPolicy(); err != nil {
				return usageErrorf(cmd, "%s", err.Error())
			}
			var ra *resourceArgs
			if len(args) > 0 {
				var err error
				if ra, err = parseResourceArgs(cmd, scheme.Default(), args); err != nil {
					return err
				}
				if !ra.byName {
					return usageErrorf(cmd, "resource(s) were provided, but no name was specified")
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return runDelete(cmd, o, d, c, ra)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&d.files, "filename", "f", nil, "manifest file, directory or - (stdin) naming the objects to delete; repeatable")
	f.Int64Var(&d.gracePeriod, "grace-period", -1, "seconds a pod gets to stop; -1 keeps the pod's own, 0 (only with --force) deletes at once")
	f.BoolVar(&d.now, "now", false, "stop pods right away (grace period 1)")
	f.BoolVar(&d.force, "force", false, "remove objects from the API at once, without waiting for their processes to stop")
	f.BoolVar(&d.ignoreNotFound, "ignore-not-found", false, "treat objects that do not exist as deleted")
	f.StringVar(&d.cascade, "cascade", "background", "what happens to the objects' dependents: background (deleted after the object), "+
		"foreground (deleted before it: the object waits for them) or orphan (kept, without their owner)")
	addDryRunFlag(cmd, &d.dryRun)
	return cmd
}

// propagationPolicy is the DeleteOptions policy --cascade asks for, as kubectl maps it (the
// deprecated true and false are background and orphan).
func (d *deleteOptions) propagationPolicy() (string, error) {
	switch d.cascade {
	case "background", "true", "":
		return "Background", nil
	case "foreground":
		return "Foreground", nil
	case "orphan", "false":
		return "Orphan", nil
	}
	return "", fmt.Errorf(`invalid cascade value (%s). Must be "background", "foreground", or "orphan"`, d.cascade)
}

// grace turns the flags into the request's grace period, as kubectl does: --grace-period=0
// without --force means 1 (an immediate but orderly stop), since a forced removal can leave
// processes running on a node that no longer knows about them.
func (d *deleteOptions) grace() *int64 {
	g := d.gracePeriod
	switch {
	case d.now:
		g = 1
	case g == 0 && !d.force:
		g = 1
	case g < 0 && d.force:
		g = 0
	}
	if g < 0 {
		return nil
	}
	return &g
}

func runDelete(cmd *cobra.Command, o *globalOptions, d *deleteOptions, c client.Interface, ra *resourceArgs) error {
	ctx := cmd.Context()
	rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
	policy, _ := d.propagationPolicy()
	opts := client.DeleteOptions{GracePeriodSeconds: d.grace(), DryRun: d.dryRun == "server", PropagationPolicy: policy}
	if d.force {
		fmt.Fprintln(o.streams.ErrOut, "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.")
	}
	del := func(k *scheme.Kind, ns, name string) {
		if err := deleteObject(ctx, o, d, c, k, namespaceFor(k, ns), name, opts); err != nil {
			rep.report(err)
		}
	}

	if ra != nil {
		for _, t := range ra.targets {
			for _, name := range t.names {
				del(t.kind, o.namespace, name)
			}
		}
		return rep.result()
	}

	objs, err := loadManifests(d.files, o.streams.In, c.Scheme(), rep)
	if err != nil {
		return err
	}
	explicit := o.explicitNamespace(cmd)
	for _, m := range objs {
		if err := setManifestNamespace(m.Kind, m.Object, o.namespace, explicit); err != nil {
			rep.report(err)
			continue
		}
		md := m.Object.GetMetadata()
		del(m.Kind, md.GetNamespace(), md.GetName())
	}
	return rep.result()
}

// deleteObject deletes one object and prints `pod "web" deleted`.
func deleteObject(ctx context.Context, o *globalOptions, d *deleteOptions, c client.Interface, k *scheme.Kind, ns, name string, opts client.DeleteOptions) error {
	if name == "" {
		return fmt.Errorf("%s: resource name may not be empty", k.Kind)
	}
	_, err := c.Delete(ctx, k, ns, name, opts)
	if apierrors.IsNotFound(err) && d.ignoreNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	verb := "deleted"
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds == 0 && d.force {
		verb = "force deleted"
	}
	fmt.Fprintf(o.streams.Out, "%s %q %s%s\n", kindRef(k), name, verb, dryRunSuffix(opts.DryRun))
	return nil
}
