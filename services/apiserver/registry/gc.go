package registry

import (
	"context"
	"fmt"
	"slices"

	"github.com/skiff-project/skiff/pkg/apierrors"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/controller"
)

// A delete records its propagation policy as Kubernetes does, in the object's finalizers, for
// the garbage collector (services/rs-controller/garbagecollector) to carry out:
//
//   - Orphan (or orphanDependents: true) adds the "orphan" finalizer: the collector removes
//     the owner's references from its dependents, then the finalizer;
//   - Foreground adds "foregroundDeletion": the collector deletes the dependents, waits for
//     those that block their owner's deletion to be gone, then removes the finalizer;
//   - Background (the default) adds neither and removes both: the object goes at once and the
//     collector deletes its dependents after it.
//
// Without a policy an object keeps the one its finalizers already record. The finalizers are
// only changed while the object is not waiting out a grace period (as in Kubernetes), so a
// later delete with Background releases an object held for a collector.
//
// Nothing waits for a collector that is not there: the policies that need one are accepted
// only while the collector's Lease (kube-system/garbage-collector) is renewed; otherwise the
// delete is refused (503, nothing changes) and says what to do instead.

// gcFinalizers returns obj's finalizers as the delete options make them, and whether they
// changed and whether a collector must now act.
func gcFinalizers(obj scheme.Object, opts DeleteOptions) (finalizers []string, changed, needsCollector bool) {
	md := obj.GetMetadata()
	cur := md.GetFinalizers()
	orphan, foreground := slices.Contains(cur, controller.FinalizerOrphanDependents), slices.Contains(cur, controller.FinalizerDeleteDependents)
	switch {
	case opts.OrphanDependents != nil:
		orphan, foreground = *opts.OrphanDependents, false
	case opts.PropagationPolicy == PropagationOrphan:
		orphan, foreground = true, false
	case opts.PropagationPolicy == PropagationForeground:
		orphan, foreground = false, true
	case opts.PropagationPolicy == PropagationBackground:
		orphan, foreground = false, false
	case orphan && foreground:
		foreground = false // both recorded (by hand): the orphan finalizer wins, as in Kubernetes
	}
	for _, f := range cur {
		if f != controller.FinalizerOrphanDependents && f != controller.FinalizerDeleteDependents {
			finalizers = append(finalizers, f)
		}
	}
	if orphan {
		finalizers = append(finalizers, controller.FinalizerOrphanDependents)
	}
	if foreground {
		finalizers = append(finalizers, controller.FinalizerDeleteDependents)
	}
	changed = !slices.Equal(slices.Sorted(slices.Values(cur)), slices.Sorted(slices.Values(finalizers)))
	added := (orphan && !slices.Contains(cur, controller.FinalizerOrphanDependents)) ||
		(foreground && !slices.Contains(cur, controller.FinalizerDeleteDependents))
	return finalizers, changed, added
}

// requireCollector refuses a delete whose policy only a running garbage collector can carry
// out when none renews its Lease.
func (r *Registry) requireCollector(ctx context.Context, policy string) error {
	k, err := r.scheme.ForName("leases")
	if err != nil {
		return apierrors.NewInternal(err)
	}
	obj, err := r.Get(ctx, k, controller.GarbageCollectorLeaseNamespace, controller.GarbageCollectorLeaseName, GetOptions{})
	if err == nil && controller.LeaseHeld(obj.(*coordinationv1.Lease), r.now()) {
		return nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return apierrors.NewServiceUnavailable(fmt.Sprintf("propagationPolicy %s needs the garbage collector, and none is running "+
		"(the Lease %s/%s is not renewed): delete with propagationPolicy Background, or start the garbage collector "+
		"(rs-controller --controllers includes garbagecollector)", policy,
		controller.GarbageCollectorLeaseNamespace, controller.GarbageCollectorLeaseName))
}
