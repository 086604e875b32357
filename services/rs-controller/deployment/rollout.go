package deployment

import (
	"context"
	"fmt"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/controller"
)

// ---- RollingUpdate ----

// rolloutRolling moves one step: grow the new ReplicaSet within maxSurge, or else shrink old
// ones within maxUnavailable; once complete, trim the history.
func (c *Controller) rolloutRolling(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.allReplicaSets(ctx, d, rsList, true)
	if err != nil {
		return err
	}
	all := withNew(old, newRS)
	scaledUp, err := c.reconcileNewReplicaSet(ctx, all, newRS, d)
	if err != nil {
		return err
	}
	if scaledUp {
		return c.syncRolloutStatus(ctx, all, newRS, d)
	}
	scaledDown, err := c.reconcileOldReplicaSets(ctx, all, active(old), newRS, d)
	if err != nil {
		return err
	}
	if scaledDown {
		return c.syncRolloutStatus(ctx, all, newRS, d)
	}
	if complete(d, d.Status) {
		if err := c.cleanup(ctx, old, d); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, all, newRS, d)
}

func (c *Controller) reconcileNewReplicaSet(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) (bool, error) {
	switch want := dReplicas(d); {
	case rsReplicas(newRS) == want:
		return false, nil
	case rsReplicas(newRS) > want:
		scaled, _, err := c.scaleReplicaSet(ctx, newRS, want, d)
		return scaled, err
	}
	scaled, _, err := c.scaleReplicaSet(ctx, newRS, c.newRSNewReplicas(d, all, newRS), d)
	return scaled, err
}

// reconcileOldReplicaSets shrinks old ReplicaSets as far as maxUnavailable allows: first
// their pods that are not available anyway, then available ones down to replicas minus
// maxUnavailable.
func (c *Controller) reconcileOldReplicaSets(ctx context.Context, all, oldActive []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) (bool, error) {
	if specCount(oldActive) == 0 {
		return false, nil
	}
	minAvailable := dReplicas(d) - MaxUnavailable(d)
	newUnavailable := rsReplicas(newRS) - newRS.GetStatus().GetAvailableReplicas()
	maxScaledDown := specCount(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false, nil
	}
	oldActive, cleaned, err := c.cleanupUnhealthy(ctx, oldActive, d, maxScaledDown)
	if err != nil {
		return false, err
	}
	scaled, err := c.scaleDownOld(ctx, withNew(oldActive, newRS), oldActive, d)
	if err != nil {
		return false, err
	}
	return cleaned+scaled > 0, nil
}

// cleanupUnhealthy shrinks old ReplicaSets by their unavailable pods (which the ReplicaSet
// controller deletes first), at most maxCleanup in all.
func (c *Controller) cleanupUnhealthy(ctx context.Context, old []*appsv1.ReplicaSet, d *appsv1.Deployment, maxCleanup int32) ([]*appsv1.ReplicaSet, int32, error) {
	old = append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(old)
	var total int32
	for i, rs := range old {
		if total >= maxCleanup {
			break
		}
		unhealthy := rsReplicas(rs) - rs.GetStatus().GetAvailableReplicas()
		if rsReplicas(rs) == 0 || unhealthy <= 0 {
			continue
		}
		n := min(maxCleanup-total, unhealthy)
		_, updated, err := c.scaleReplicaSet(ctx, rs, rsReplicas(rs)-n, d)
		if err != nil {
			return nil, total, err
		}
		total += n
		old[i] = updated
	}
	return old, total, nil
}

// scaleDownOld shrinks old ReplicaSets, oldest first, by the available pods above replicas
// minus maxUnavailable.
func (c *Controller) scaleDownOld(ctx context.Context, all, old []*appsv1.ReplicaSet, d *appsv1.Deployment) (int32, error) {
	minAvailable := dReplicas(d) - MaxUnavailable(d)
	available := availableCount(all)
	if available <= minAvailable {
		return 0, nil
	}
	old = append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(old)
	want := available - minAvailable
	var total int32
	for _, rs := range old {
		if total >= want {
			break
		}
		if rsReplicas(rs) == 0 {
			continue
		}
		n := min(rsReplicas(rs), want-total)
		if _, _, err := c.scaleReplicaSet(ctx, rs, rsReplicas(rs)-n, d); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// ---- Recreate ----

// rolloutRecreate scales every old ReplicaSet to zero, waits until none of their pods is
// left (running or terminating), and only then creates and scales up the new one.
func (c *Controller) rolloutRecreate(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.allReplicaSets(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	all := withNew(old, newRS)
	scaledDown := false
	for _, rs := range active(old) {
		scaled, _, err := c.scaleReplicaSet(ctx, rs, 0, d)
		if err != nil {
			return err
		}
		scaledDown = scaledDown || scaled
	}
	if scaledDown {
		return c.syncRolloutStatus(ctx, all, newRS, d)
	}
	if oldPodsRunning(newRS, old, c.podsByReplicaSet(d, rsList)) {
		return c.syncRolloutStatus(ctx, all, newRS, d)
	}
	if newRS == nil {
		if newRS, old, err = c.allReplicaSets(ctx, d, rsList, true); err != nil {
			return err
		}
		all = withNew(old, newRS)
	}
	if newRS == nil {
		return fmt.Errorf("no new replica set for %s", d.GetMetadata().GetName())
	}
	if _, _, err := c.scaleReplicaSet(ctx, newRS, dReplicas(d), d); err != nil {
		return err
	}
	if complete(d, d.Status) {
		if err := c.cleanup(ctx, old, d); err != nil {
			return err
		}
	}
	return c.syncRolloutStatus(ctx, all, newRS, d)
}

// oldPodsRunning: an old ReplicaSet still reports pods, or any pod of one has not finished
// (terminating pods count: their containers may still run).
func oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, pods map[string][]*corev1.Pod) bool {
	if statusSum(old, func(s *appsv1.ReplicaSetStatus) int32 { return s.GetReplicas() }) > 0 {
		return true
	}
	for uid, list := range pods {
		if newRS != nil && uid == newRS.GetMetadata().GetUid() {
			continue
		}
		for _, p := range list {
			if !controller.IsPodTerminal(p) {
				return true
			}
		}
	}
	return false
}
