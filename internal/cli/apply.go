package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/patch"
)

// applyFlags are apply's options beyond -f and --dry-run.
type applyFlags struct {
	serverSide     bool
	forceConflicts bool
	fieldManager   string
}

func newApplyCommand(o *globalOptions) *cobra.Command {
	var files []string
	var dryRun string
	var af applyFlags
	cmd := &cobra.Command{
		Use:   "apply -f FILENAME",
		Short: "Create or update objects from manifest files",
		Long: "Create the objects of Kubernetes-style YAML or JSON manifests, or update them to match the\n" +
			"manifests when they exist, as kubectl apply does. -f takes a file, a directory (its .yaml,\n" +
			".yml and .json files) or - for standard input, and may be repeated.\n\n" +
			"By default the merge is client-side: the manifest applied last time is kept in the\n" +
			"kubectl.kubernetes.io/last-applied-configuration annotation, and fields removed from the\n" +
			"manifest since are removed from the object, while fields others set are kept. With\n" +
			"--server-side the server merges (server-side apply) and tracks field ownership.",
		Example: "  skiff apply -f deploy/examples/web.yaml\n  cat web.yaml | skiff apply -f -\n" +
			"  skiff apply -f web.yaml --dry-run=server\n  skiff apply -f web.yaml --server-side --force-conflicts",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageErrorf(cmd, "must specify -f")
			}
			dry, err := parseDryRunFlag(cmd, dryRun)
			if err != nil {
				return err
			}
			if af.forceConflicts && !af.serverSide {
				return usageErrorf(cmd, "--force-conflicts only works with --server-side")
			}
			if af.fieldManager == "" {
				af.fieldManager = clientSideApplyManager
				if af.serverSide {
					af.fieldManager = serverSideApplyManager
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return runApply(cmd, o, c, files, dry, af)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file, directory or - (stdin); repeatable")
	cmd.Flags().BoolVar(&af.serverSide, "server-side", false, "the server merges the manifest (server-side apply) and tracks field ownership")
	cmd.Flags().BoolVar(&af.forceConflicts, "force-conflicts", false, "with --server-side, take over fields other managers own")
	cmd.Flags().StringVar(&af.fieldManager, "field-manager", "", `name of the manager of the applied fields (default "kubectl-client-side-apply", or "kubectl" with --server-side)`)
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

// Managers as kubectl names them, so that skiff and kubectl apply share field ownership.
const (
	clientSideApplyManager = "kubectl-client-side-apply"
	serverSideApplyManager = "kubectl"
	// lastAppliedAnnotation holds the configuration client-side apply applied last.
	lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"
)

func runApply(cmd *cobra.Command, o *globalOptions, c client.Interface, files []string, dry bool, af applyFlags) error {
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
		var result, op string
		if af.serverSide {
			result, op, err = serverSideApply(cmd.Context(), c, m.Kind, m.Object, dry, af)
		} else {
			result, op, err = applyObject(cmd.Context(), c, m.Kind, m.Object, dry, af.fieldManager, o.streams.ErrOut)
		}
		if err != nil {
			rep.report(fmt.Errorf("error when %s %q: %w", op, m.source, err))
			continue
		}
		fmt.Fprintf(o.streams.Out, "%s %s%s\n", objectRef(m.Kind, m.Object.GetMetadata().GetName()), result, dryRunSuffix(dry))
	}
	return rep.result()
}

// serverSideApply sends the manifest as an apply patch; the server merges it.
func serverSideApply(ctx context.Context, c client.Interface, k *scheme.Kind, obj scheme.Object, dry bool, af applyFlags) (result, op string, err error) {
	md := obj.GetMetadata()
	if md.GetName() == "" {
		return "", "applying", fmt.Errorf("%s: resource name may not be empty", k.Kind)
	}
	data, err := codec.Marshal(obj)
	if err != nil {
		return "", "applying", err
	}
	_, err = client.Patch(ctx, c, k, md.GetNamespace(), md.GetName(), client.ApplyPatchType, data,
		client.PatchOptions{DryRun: dry, FieldManager: af.fieldManager, Force: af.forceConflicts})
	return "serverside-applied", "applying patch to", err
}

// applyObject is client-side apply, as kubectl does it: a new object is created with the
// manifest in its last-applied annotation; an existing one gets the three-way merge of the
// manifest applied last time (the annotation), the new manifest and the live object (fields
// dropped from the manifest are removed, fields only others set are kept), written with the
// live object's resourceVersion so that a concurrent change is merged again rather than
// overwritten. It reports "created", "configured", or "unchanged" when the server found
// nothing to change (it then keeps the resourceVersion). op says what failed, for the error
// message ("creating", "updating", ...). A dry run asks the server the same and stores nothing.
func applyObject(ctx context.Context, c client.Interface, k *scheme.Kind, obj scheme.Object, dry bool, manager string, warnings io.Writer) (result, op string, err error) {
	md := obj.GetMetadata()
	if md.GetName() == "" {
		return "", "applying", fmt.Errorf("%s: resource name may not be empty", k.Kind)
	}
	opts := []client.WriteOption{client.WithFieldManager(manager)}
	if dry {
		opts = append(opts, client.DryRunAll)
	}
	modified, err := withLastApplied(obj)
	if err != nil {
		return "", "applying", err
	}
	err = retryOnConflict(ctx, func() error {
		op = "retrieving current configuration of"
		cur, err := c.Get(ctx, k, md.GetNamespace(), md.GetName())
		if apierrors.IsNotFound(err) {
			op = "creating"
			_, err = c.Create(ctx, modified, opts...)
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
		last, ok := cur.GetMetadata().GetAnnotations()[lastAppliedAnnotation]
		if !ok {
			fmt.Fprintf(warnings, "Warning: resource %s/%s is missing the %s annotation which is required by skiff apply. "+
				"skiff apply should only be used on resources created declaratively by either skiff create --save-config or skiff apply. "+
				"The missing annotation will be patched automatically.\n", k.Resource, md.GetName(), lastAppliedAnnotation)
		}
		next, err := threeWayMerge(k, last, modified, cur)
		if err != nil {
			return err
		}
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

// withLastApplied is obj with its own JSON (without the annotation itself) in the
// last-applied annotation, as kubectl records it.
func withLastApplied(obj scheme.Object) (scheme.Object, error) {
	out := proto.Clone(obj).(scheme.Object)
	md := scheme.Meta(out)
	own := map[string]string{}
	for k, v := range md.Annotations {
		if k != lastAppliedAnnotation {
			own[k] = v
		}
	}
	md.Annotations = nil
	if len(own) > 0 {
		md.Annotations = own
	}
	data, err := codec.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode the applied configuration: %w", err)
	}
	own[lastAppliedAnnotation] = string(data)
	md.Annotations = own
	return out, nil
}

// threeWayMerge merges the new configuration into the live object (pkg/patch.ThreeWay): the
// last-applied configuration (last, JSON; "" when there is none) says which fields the
// configuration owned.
func threeWayMerge(k *scheme.Kind, last string, modified, cur scheme.Object) (scheme.Object, error) {
	toMap := func(o scheme.Object) (map[string]any, error) {
		b, err := codec.Marshal(o)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		return m, json.Unmarshal(b, &m)
	}
	var original map[string]any
	if last != "" {
		if err := json.Unmarshal([]byte(last), &original); err != nil {
			original = nil // an unreadable annotation is as if there were none
		}
	}
	mod, err := toMap(modified)
	if err != nil {
		return nil, err
	}
	live, err := toMap(cur)
	if err != nil {
		return nil, err
	}
	merged := patch.ThreeWay(original, mod, live, k.New().ProtoReflect().Descriptor())
	data, err := json.Marshal(merged)
	if err != nil {
		return nil, err
	}
	next := k.New()
	if err := codec.Unmarshal(data, next); err != nil {
		return nil, fmt.Errorf("decode the merged object: %w", err)
	}
	return next, nil
}
