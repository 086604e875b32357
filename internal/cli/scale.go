package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

func newScaleCommand(o *globalOptions) *cobra.Command {
	var replicas int32
	cmd := &cobra.Command{
		Use:     "scale (KIND/NAME... | KIND NAME...) --replicas=COUNT",
		Short:   "Set the number of replicas of deployments and replica sets",
		Example: "  skiff scale deployment/web --replicas=5\n  skiff scale rs web-7d9f --replicas=0",
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return usageErrorf(cmd, "--replicas=COUNT is required")
			}
			if replicas < 0 {
				return usageErrorf(cmd, "--replicas=COUNT must be 0 or more, got %d", replicas)
			}
			ra, err := parseResourceArgs(cmd, scheme.Default(), args)
			if err != nil {
				return err
			}
			if !ra.byName {
				return usageErrorf(cmd, "resource(s) were provided, but no name was specified")
			}
			for _, t := range ra.targets {
				if t.kind.Kind != "Deployment" && t.kind.Kind != "ReplicaSet" {
					return usageErrorf(cmd, "%s cannot be scaled: only deployments and replicasets have replicas", t.kind.GroupResource())
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
			for _, t := range ra.targets {
				for _, name := range t.names {
					if err := scaleObject(cmd.Context(), c, t.kind, o.namespace, name, replicas); err != nil {
						rep.report(err)
						continue
					}
					fmt.Fprintf(o.streams.Out, "%s scaled\n", objectRef(t.kind, name))
				}
			}
			return rep.result()
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the new number of replicas (required)")
	return cmd
}

// scaleObject sets spec.replicas by read-modify-write; a conflict with a concurrent writer
// (the deployment controller updates the object too) is retried on a fresh read.
func scaleObject(ctx context.Context, c client.Interface, k *scheme.Kind, ns, name string, replicas int32) error {
	return retryOnConflict(ctx, func() error {
		obj, err := c.Get(ctx, k, ns, name)
		if err != nil {
			return err
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			if v.Spec == nil {
				v.Spec = &appsv1.DeploymentSpec{}
			}
			v.Spec.Replicas = &replicas
		case *appsv1.ReplicaSet:
			if v.Spec == nil {
				v.Spec = &appsv1.ReplicaSetSpec{}
			}
			v.Spec.Replicas = &replicas
		default:
			return fmt.Errorf("%s cannot be scaled", k.GroupResource())
		}
		_, err = c.Update(ctx, obj)
		return err
	})
}
