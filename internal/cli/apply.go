package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

func newApplyCommand(o *globalOptions) *cobra.Command {
	var files []string
	var dryRun string
	cmd := &cobra.Command{
		Use:   "apply -f FILENAME",
		Short: "Create or update objects from manifest files",
		Long: "Create the objects of Kubernetes-style YAML or JSON manifests, or update them to match the\n" +
			"manifests when they exist. -f takes a file, a directory (its .yaml, .yml and .json files)\n" +
			"or - for standard input, and may be repeated.",
		Example: "  skiff apply -f deploy/examples/web.yaml\n  cat web.yaml | skiff apply -f -\n" +
			"  skiff apply -f web.yaml --dry-run=server",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageErrorf(cmd, "must specify -f")
			}
			dry, err := parseDryRunFlag(cmd, dryRun)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return runApply(cmd, o, c, files, dry)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory or - (stdin); repeatable")
	addDryRunFlag(cmd, &dryRun)
	return cmd
}

// addDryRunFlag adds kubectl's --dry-run flag.
func addDryRunFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVar(v, "dry-run", "none",
		`"none" or "server": with "server" the server checks the request (defaulting, admission, validation) and stores nothing`)
}

// parseDryRunFlag reads --dry-run. kubectl's "client" (a local preview) is not offered: the
// server's answer is the one that counts.
func parseDryRunFlag(cmd *cobra.Command, v string) (bool, error) {
	switch v {
	case "none", "":
		return false, nil
	case "server":
		return true, nil
	case "client":
		return false, usageErrorf(cmd, "--dry-run=client is not supported; use --dry-run=server")
	}
	return false, usageErrorf(cmd, "Invalid dry-run value (%s). Must be \"none\" or \"server\".", v)
}

// dryRunSuffix is what kubectl appends to the report of a dry run.
func dryRunSuffix(dry bool) string {
	if dry {
		return " (server dry run)"
	}
	return ""
}

func runApply(cmd *cobra.Command, o *globalOptions, c client.Interface, files []string, dry bool) error {
	rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
	objs, err := loadManifests(files, o.streams.In, c.Scheme(), rep)
	if err != nil {
		return err
	}
	explicit := o.explicitNamespace(cmd)
	for _, m := range objs {
		for _, f := range m.Unknown {
			fmt.Fprintf(o.streams.ErrOut, "Warning: unknown field %q\n", f)
		}
		if err := setManifestNamespace(m.Kind, m.Object, o.namespace, explicit); err != nil {
			rep.report(err)
			continue
		}
		result, op, err := applyObject(cmd.Context(), c, m.Kind, m.Object, dry)
		if err != nil {
			rep.report(fmt.Errorf("error when %s %q: %w", op, m.source, err))
			continue
		}
		fmt.Fprintf(o.streams.Out, "%s %s%s\n", objectRef(m.Kind, m.Object.GetMetadata().GetName()), result, dryRunSuffix(dry))
	}
	return rep.result()
}

// applyObject creates obj, or replaces the existing object's spec and metadata with the
// manifest's and reports what the server did: "created", "configured", or "unchanged" when the
// server found nothing to change (it then keeps the resourceVersion). op says what failed, for
// the error message ("creating", "updating", ...). A dry run asks the server the same and
// stores nothing.
func applyObject(ctx context.Context, c client.Interface, k *scheme.Kind, obj scheme.Object, dry bool) (result, op string, err error) {
	md := obj.GetMetadata()
	if md.GetName() == "" {
		return "", "applying", fmt.Errorf("%s: resource name may not be empty", k.Kind)
	}
	var opts []client.WriteOption
	if dry {
		opts = append(opts, client.DryRunAll)
	}
	err = retryOnConflict(ctx, func() error {
		op = "retrieving current configuration of"
		cur, err := c.Get(ctx, k, md.GetNamespace(), md.GetName())
		if apierrors.IsNotFound(err) {
			op = "creating"
			_, err = c.Create(ctx, obj, opts...)
			if apierrors.IsAlreadyExists(err) {
				// Created by someone else since our Get: retry as an update.
				return apierrors.NewConflict(k.Group, k.Resource, md.GetName(), "object was created concurrently")
			}
			result = "created"
			return err
		}
		if err != nil {
			return err
		}
		op = "updating"
		next := proto.Clone(obj).(scheme.Object)
		keepAllocatedFields(next, cur)
		rv := cur.GetMetadata().GetResourceVersion()
		scheme.Meta(next).ResourceVersion = rv
		updated, err := c.Update(ctx, next, opts...)
		if err != nil {
			return err
		}
		result = "configured"
		// A real update that changes nothing keeps the resourceVersion; a dry run keeps it
		// anyway, but answers a no-op with the stored object itself.
		if (!dry && updated.GetMetadata().GetResourceVersion() == rv) || (dry && proto.Equal(updated, cur)) {
			result = "unchanged"
		}
		return nil
	})
	return result, op, err
}

// keepAllocatedFields copies into a manifest the fields the cluster filled in after creation
// and that manifests normally leave out: a service's cluster IPs and node ports, a pod's node.
// They are immutable, so sending them empty would make every re-apply fail. (kubectl's
// three-way merge keeps them for the same reason.)
func keepAllocatedFields(next, cur scheme.Object) {
	switch n := next.(type) {
	case *corev1.Service:
		c, ok := cur.(*corev1.Service)
		if !ok || n.Spec == nil || c.Spec == nil {
			return
		}
		if n.Spec.ClusterIp == "" && len(n.Spec.ClusterIps) == 0 {
			n.Spec.ClusterIp, n.Spec.ClusterIps = c.Spec.ClusterIp, append([]string(nil), c.Spec.ClusterIps...)
		}
		if t := n.Spec.Type; t != "NodePort" && t != "LoadBalancer" {
			return // other types have no node ports to keep
		}
		for _, np := range n.Spec.Ports {
			if np.NodePort != 0 {
				continue
			}
			for _, cp := range c.Spec.Ports {
				if cp.Port == np.Port && protocolOrTCP(cp.Protocol) == protocolOrTCP(np.Protocol) {
					np.NodePort = cp.NodePort
				}
			}
		}
	case *corev1.Pod:
		c, ok := cur.(*corev1.Pod)
		if ok && n.Spec != nil && n.Spec.NodeName == "" {
			n.Spec.NodeName = c.GetSpec().GetNodeName()
		}
	}
}
