package controller

import (
	"time"

	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
)

// Finalizers the garbage collector acts on, as Kubernetes names them: a delete with
// propagationPolicy Orphan or Foreground records the policy as one of them.
const (
	FinalizerOrphanDependents = "orphan"
	FinalizerDeleteDependents = "foregroundDeletion"
)

// The garbage collector's liveness Lease: a running collector renews it, and the apiserver
// reads it before recording a policy only a collector can carry out (so that, with no
// collector running, no object waits for one forever).
const (
	GarbageCollectorLeaseNamespace = "kube-system"
	GarbageCollectorLeaseName      = "garbage-collector"
)

// LeaseHeld reports whether a Lease's holder renewed it within its duration at now.
func LeaseHeld(l *coordinationv1.Lease, now time.Time) bool {
	spec := l.GetSpec()
	if spec.GetHolderIdentity() == "" || spec.GetLeaseDurationSeconds() <= 0 {
		return false
	}
	renewed, err := ParseTime(spec.GetRenewTime())
	if err != nil {
		return false
	}
	return now.Before(renewed.Add(time.Duration(spec.GetLeaseDurationSeconds()) * time.Second))
}
