package deployment

import (
	"context"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/record"
)

// allReplicaSets splits the Deployment's ReplicaSets into the new one (nil if none yet and
// create is false) and the old ones, and brings the revision annotations up to date.
func (c *Controller) allReplicaSets(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	existing := findNewReplicaSet(d, rsList)
	var old []*appsv1.ReplicaSet
	for _, rs := range rsList {
		if existing == nil || rs.GetMetadata().GetUid() != existing.GetMetadata().GetUid() {
			old = append(old, rs)
		}
	}
	newRS, err := c.newReplicaSet(ctx, d, existing, old, create)
	return newRS, old, err
}

// newReplicaSet returns the ReplicaSet of the Deployment's template, raising its revision
// above every old one, or creates it.
func (c *Controller) newReplicaSet(ctx context.Context, d *appsv1.Deployment, existing *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	newRevision := maxRevision(old) + 1
	now := c.cfg.Now()
	if existing != nil {
		rs := proto.Clone(existing).(*appsv1.ReplicaSet)
		annotationsChanged := setNewReplicaSetAnnotations(d, rs, newRevision, true)
		if annotationsChanged || rs.GetSpec().GetMinReadySeconds() != d.GetSpec().GetMinReadySeconds() {
			rs.Spec.MinReadySeconds = d.GetSpec().GetMinReadySeconds()
			res, err := c.cfg.Client.Update(ctx, rs)
			if err != nil {
				return nil, fmt.Errorf("update new replica set: %w", err)
			}
			return res.(*appsv1.ReplicaSet), nil
		}
		if err := c.setDeploymentRevision(ctx, d, rs.GetMetadata().GetAnnotations()[RevisionAnnotation]); err != nil {
			return nil, err
		}
		if hasProgressDeadline(d) && getCondition(d.Status, ConditionProgressing) == nil {
			setCondition(d.Status, newCondition(ConditionProgressing, controller.ConditionTrue, ReasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", rs.GetMetadata().GetName()), now))
			if err := c.writeStatus(ctx, d); err != nil {
				return nil, err
			}
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}

	md := d.GetMetadata()
	hash := controller.ComputeHash(d.GetSpec().GetTemplate(), d.GetStatus().CollisionCount)
	tmpl := proto.Clone(d.GetSpec().GetTemplate()).(*corev1.PodTemplateSpec)
	if tmpl.Metadata == nil {
		tmpl.Metadata = &metav1.ObjectMeta{}
	}
	tmpl.Metadata.Labels = withLabel(tmpl.Metadata.Labels, controller.PodTemplateHashLabel, hash)
	sel := proto.Clone(d.GetSpec().GetSelector()).(*metav1.LabelSelector)
	sel.MatchLabels = withLabel(sel.MatchLabels, controller.PodTemplateHashLabel, hash)
	rs := &appsv1.ReplicaSet{
		Metadata: &metav1.ObjectMeta{Name: md.GetName() + "-" + hash, Namespace: md.GetNamespace(),
			Labels: maps.Clone(tmpl.Metadata.Labels), OwnerReferences: []*metav1.OwnerReference{controller.NewControllerRef(c.dKind, md)}},
		Spec: &appsv1.ReplicaSetSpec{Replicas: proto.Int32(0), MinReadySeconds: d.GetSpec().GetMinReadySeconds(), Selector: sel, Template: tmpl},
	}
	size := c.newRSNewReplicas(d, withNew(old, rs), rs)
	rs.Spec.Replicas = proto.Int32(size)
	setNewReplicaSetAnnotations(d, rs, newRevision, false)

	created, err := c.cfg.Client.Create(ctx, rs)
	alreadyExists := false
	switch {
	case apierrors.IsAlreadyExists(err):
		// A slow cache, or a hash collision: ours if we control it and it has our template.
		alreadyExists = true
		obj, gerr := c.cfg.Client.Get(ctx, c.rsKind, md.GetNamespace(), rs.GetMetadata().GetName())
		if gerr != nil {
			return nil, fmt.Errorf("get existing replica set: %w", gerr)
		}
		ref := controller.ControllerOf(obj.GetMetadata())
		if ref != nil && ref.GetUid() == md.GetUid() && controller.EqualIgnoreHash(d.GetSpec().GetTemplate(), obj.(*appsv1.ReplicaSet).GetSpec().GetTemplate()) {
			created, err = obj, nil
			break
		}
		cc := d.GetStatus().GetCollisionCount() + 1
		d.Status.CollisionCount = proto.Int32(cc)
		if werr := c.writeStatus(ctx, d); werr != nil {
			return nil, werr
		}
		return nil, fmt.Errorf("replica set %s exists with another template: hash collision, collisionCount now %d", rs.GetMetadata().GetName(), cc)
	case apierrors.HasStatusCause(err, apierrors.CauseNamespaceTerminating):
		return nil, err
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.GetMetadata().GetName(), err)
		if hasProgressDeadline(d) {
			setCondition(d.Status, newCondition(ConditionProgressing, controller.ConditionFalse, ReasonFailedRSCreate, msg, now))
			_ = c.writeStatus(ctx, d) // the create error is the one to report
		}
		c.event(d, record.Warning, ReasonFailedRSCreate, "%s", msg)
		return nil, fmt.Errorf("create replica set: %w", err)
	}
	newRS := created.(*appsv1.ReplicaSet)
	if !alreadyExists && size > 0 {
		c.event(d, record.Normal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", newRS.GetMetadata().GetName(), size)
	}
	if err := c.setDeploymentRevision(ctx, d, strconv.FormatInt(newRevision, 10)); err != nil {
		return nil, err
	}
	if !alreadyExists && hasProgressDeadline(d) {
		setCondition(d.Status, newCondition(ConditionProgressing, controller.ConditionTrue, ReasonNewReplicaSet,
			fmt.Sprintf("Created new replica set %q", newRS.GetMetadata().GetName()), now))
		if err := c.writeStatus(ctx, d); err != nil {
			return nil, err
		}
	}
	return newRS, nil
}

func withLabel(m map[string]string, k, v string) map[string]string {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	out[k] = v
	return out
}

// setDeploymentRevision records the current revision on the Deployment.
func (c *Controller) setDeploymentRevision(ctx context.Context, d *appsv1.Deployment, rev string) error {
	md := d.GetMetadata()
	if md.GetAnnotations()[RevisionAnnotation] == rev {
		return nil
	}
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	md.Annotations[RevisionAnnotation] = rev
	return c.writeMeta(ctx, d)
}

// newRSNewReplicas is the size the new ReplicaSet may grow to now.
func (c *Controller) newRSNewReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	if !isRolling(d) {
		return dReplicas(d)
	}
	maxTotal := dReplicas(d) + MaxSurge(d)
	current := podCount(all)
	if current >= maxTotal {
		return rsReplicas(newRS)
	}
	up := min(maxTotal-current, dReplicas(d)-rsReplicas(newRS))
	return rsReplicas(newRS) + max(up, 0)
}

// ---- scaling (paused deployments and size changes) ----

// isScalingEvent: some active ReplicaSet was last sized for another Deployment size.
func (c *Controller) isScalingEvent(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) (bool, error) {
	newRS, old, err := c.allReplicaSets(ctx, d, rsList, false)
	if err != nil {
		return false, err
	}
	for _, rs := range active(withNew(old, newRS)) {
		if desired, ok := annotationInt(rs, DesiredReplicasAnnotation); ok && desired != dReplicas(d) {
			return true, nil
		}
	}
	return false, nil
}

// syncScale resizes the ReplicaSets to the Deployment's size without rolling anything (a
// paused Deployment, or a size change).
func (c *Controller) syncScale(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.allReplicaSets(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	if err := c.scale(ctx, d, newRS, old); err != nil {
		return err
	}
	if d.GetSpec().GetPaused() {
		if err := c.cleanup(ctx, old, d); err != nil {
			return err
		}
	}
	return c.syncDeploymentStatus(ctx, withNew(old, newRS), newRS, d)
}

// scale spreads a size change over the ReplicaSets: all of it to the one active (or newest)
// ReplicaSet when there is one, else proportionally to their sizes, as Kubernetes does.
func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
	if rs := activeOrLatest(newRS, old); rs != nil {
		if rsReplicas(rs) == dReplicas(d) {
			return nil
		}
		_, _, err := c.scaleReplicaSet(ctx, rs, dReplicas(d), d)
		return err
	}
	if isSaturated(d, newRS) {
		for _, rs := range active(old) {
			if _, _, err := c.scaleReplicaSet(ctx, rs, 0, d); err != nil {
				return err
			}
		}
		return nil
	}
	if !isRolling(d) {
		return nil
	}
	all := active(withNew(old, newRS))
	allowed := int32(0)
	if dReplicas(d) > 0 {
		allowed = dReplicas(d) + MaxSurge(d)
	}
	toAdd := allowed - specCount(all)
	switch {
	case toAdd > 0:
		sortBySizeNewer(all) // the largest (newest on ties) first
	case toAdd < 0:
		sortBySizeOlder(all) // the largest (oldest on ties) first
	}
	added := int32(0)
	sizes := make([]int32, len(all))
	for i, rs := range all {
		sizes[i] = rsReplicas(rs)
		if toAdd != 0 {
			p := proportion(rs, d, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	for i, rs := range all {
		if i == 0 && toAdd != 0 {
			sizes[0] = max(sizes[0]+toAdd-added, 0) // leftovers to the largest
		}
		if _, _, err := c.scaleReplicaSet(ctx, rs, sizes[i], d); err != nil {
			return err
		}
	}
	return nil
}

// activeOrLatest is the one active ReplicaSet, the newest one when none is active, or nil
// when several are.
func activeOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(sorted)
	act := active(withNew(old, newRS))
	switch len(act) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[len(sorted)-1]
	case 1:
		return act[0]
	}
	return nil
}

// isSaturated: the new ReplicaSet runs the whole Deployment, all available.
func isSaturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	desired, ok := annotationInt(rs, DesiredReplicasAnnotation)
	return ok && desired == dReplicas(d) && rsReplicas(rs) == dReplicas(d) && rs.GetStatus().GetAvailableReplicas() == dReplicas(d)
}

// proportion is rs's share of toAdd, given what others already took.
func proportion(rs *appsv1.ReplicaSet, d *appsv1.Deployment, toAdd, added int32) int32 {
	if rsReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	fraction := fraction(rs, d)
	allowed := toAdd - added
	if toAdd > 0 {
		return min(fraction, allowed)
	}
	return max(fraction, allowed)
}

func fraction(rs *appsv1.ReplicaSet, d *appsv1.Deployment) int32 {
	if dReplicas(d) == 0 {
		return -rsReplicas(rs)
	}
	full := dReplicas(d) + MaxSurge(d)
	annotated, ok := annotationInt(rs, MaxReplicasAnnotation)
	if !ok || annotated == 0 {
		annotated = d.GetStatus().GetReplicas()
	}
	if annotated == 0 {
		return 0
	}
	size := float64(rsReplicas(rs)*full) / float64(annotated)
	return int32(math.Round(size)) - rsReplicas(rs)
}

func sortBySizeNewer(rss []*appsv1.ReplicaSet) {
	byCreation(rss)
	for i, j := 0, len(rss)-1; i < j; i, j = i+1, j-1 {
		rss[i], rss[j] = rss[j], rss[i]
	}
	sort.SliceStable(rss, func(i, j int) bool { return rsReplicas(rss[i]) > rsReplicas(rss[j]) })
}

func sortBySizeOlder(rss []*appsv1.ReplicaSet) {
	byCreation(rss)
	sort.SliceStable(rss, func(i, j int) bool { return rsReplicas(rss[i]) > rsReplicas(rss[j]) })
}

// checkPausedConditions records pausing and resuming in the Progressing condition (not over
// a reported timeout).
func (c *Controller) checkPausedConditions(ctx context.Context, d *appsv1.Deployment) error {
	if !hasProgressDeadline(d) {
		return nil
	}
	cond := getCondition(d.Status, ConditionProgressing)
	if cond != nil && cond.GetReason() == ReasonTimedOut {
		return nil
	}
	pausedRecorded := cond != nil && cond.GetReason() == ReasonPaused
	now := c.cfg.Now()
	switch {
	case d.GetSpec().GetPaused() && !pausedRecorded:
		setCondition(d.Status, newCondition(ConditionProgressing, controller.ConditionUnknown, ReasonPaused, "Deployment is paused", now))
	case !d.GetSpec().GetPaused() && pausedRecorded:
		setCondition(d.Status, newCondition(ConditionProgressing, controller.ConditionUnknown, ReasonResumed, "Deployment is resumed", now))
	default:
		return nil
	}
	return c.writeStatus(ctx, d)
}

// cleanup deletes the oldest ReplicaSets beyond revisionHistoryLimit that run nothing.
func (c *Controller) cleanup(ctx context.Context, old []*appsv1.ReplicaSet, d *appsv1.Deployment) error {
	if d.GetSpec().RevisionHistoryLimit == nil {
		return nil
	}
	var alive []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs.GetMetadata().GetDeletionTimestamp() == "" {
			alive = append(alive, rs)
		}
	}
	diff := len(alive) - int(d.GetSpec().GetRevisionHistoryLimit())
	if diff <= 0 {
		return nil
	}
	byRevision(alive)
	for _, rs := range alive[:diff] {
		if rs.GetStatus().GetReplicas() != 0 || rsReplicas(rs) != 0 ||
			rs.GetMetadata().GetGeneration() > rs.GetStatus().GetObservedGeneration() {
			continue
		}
		md := rs.GetMetadata()
		_, err := c.cfg.Client.Delete(ctx, c.rsKind, md.GetNamespace(), md.GetName(), client.DeleteOptions{UID: md.GetUid()})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete old replica set %s: %w", md.GetName(), err)
		}
		c.log.Debug("deleted old replica set", "deployment", informer.KeyOf(d), "replicaset", md.GetName())
	}
	return nil
}

// ---- status ----

// calculateStatus is the status the ReplicaSets give the Deployment, with the Available
// condition.
func calculateStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment, now time.Time) *appsv1.DeploymentStatus {
	availableReplicas := statusSum(all, func(s *appsv1.ReplicaSetStatus) int32 { return s.GetAvailableReplicas() })
	st := &appsv1.DeploymentStatus{
		ObservedGeneration:  d.GetMetadata().GetGeneration(),
		Replicas:            statusSum(all, func(s *appsv1.ReplicaSetStatus) int32 { return s.GetReplicas() }),
		ReadyReplicas:       statusSum(all, func(s *appsv1.ReplicaSetStatus) int32 { return s.GetReadyReplicas() }),
		AvailableReplicas:   availableReplicas,
		UnavailableReplicas: max(specCount(all)-availableReplicas, 0),
		CollisionCount:      d.GetStatus().CollisionCount,
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.GetStatus().GetReplicas()
	}
	for _, cond := range d.GetStatus().GetConditions() {
		st.Conditions = append(st.Conditions, proto.Clone(cond).(*appsv1.DeploymentCondition))
	}
	if availableReplicas >= dReplicas(d)-MaxUnavailable(d) {
		setCondition(st, newCondition(ConditionAvailable, controller.ConditionTrue, ReasonMinimumReplicasAvailable,
			"Deployment has minimum availability.", now))
	} else {
		setCondition(st, newCondition(ConditionAvailable, controller.ConditionFalse, ReasonMinimumReplicasUnavailble,
			"Deployment does not have minimum availability.", now))
	}
	return st
}

// syncStatusOnly updates the status of a Deployment being deleted.
func (c *Controller) syncStatusOnly(ctx context.Context, d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) error {
	newRS, old, err := c.allReplicaSets(ctx, d, rsList, false)
	if err != nil {
		return err
	}
	return c.syncDeploymentStatus(ctx, withNew(old, newRS), newRS, d)
}

func (c *Controller) syncDeploymentStatus(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) error {
	st := calculateStatus(all, newRS, d, c.cfg.Now())
	if proto.Equal(d.Status, st) {
		return nil
	}
	d.Status = st
	return c.writeStatus(ctx, d)
}

// syncRolloutStatus updates status with the Progressing condition of a rollout: complete,
// progressing, or past its progress deadline.
func (c *Controller) syncRolloutStatus(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet, d *appsv1.Deployment) error {
	now := c.cfg.Now()
	st := calculateStatus(all, newRS, d, now)
	if !hasProgressDeadline(d) {
		removeCondition(st, ConditionProgressing)
	}
	cur := getCondition(d.Status, ConditionProgressing)
	done := st.GetReplicas() == st.GetUpdatedReplicas() && cur != nil && cur.GetReason() == ReasonNewRSAvailable
	if hasProgressDeadline(d) && !done {
		name := fmt.Sprintf("Deployment %q", d.GetMetadata().GetName())
		if newRS != nil {
			name = fmt.Sprintf("ReplicaSet %q", newRS.GetMetadata().GetName())
		}
		switch {
		case complete(d, st):
			setCondition(st, newCondition(ConditionProgressing, controller.ConditionTrue, ReasonNewRSAvailable,
				name+" has successfully progressed.", now))
		case progressing(d, st):
			cond := newCondition(ConditionProgressing, controller.ConditionTrue, ReasonReplicaSetUpdated, name+" is progressing.", now)
			if cur != nil && cur.GetStatus() == controller.ConditionTrue {
				cond.LastTransitionTime = cur.GetLastTransitionTime()
			}
			removeCondition(st, ConditionProgressing)
			setCondition(st, cond)
		case timedOut(d, st, now):
			setCondition(st, newCondition(ConditionProgressing, controller.ConditionFalse, ReasonTimedOut,
				name+" has timed out progressing.", now))
		}
	}
	if failure := replicaFailure(all); failure != nil {
		setCondition(st, failure)
	} else {
		removeCondition(st, ConditionReplicaFailure)
	}
	if proto.Equal(d.Status, st) {
		c.requeueStuck(d, st, now)
		return nil
	}
	d.Status = st
	return c.writeStatus(ctx, d)
}

// replicaFailure lifts a ReplicaSet's ReplicaFailure condition to the Deployment.
func replicaFailure(all []*appsv1.ReplicaSet) *appsv1.DeploymentCondition {
	for _, rs := range all {
		for _, cond := range rs.GetStatus().GetConditions() {
			if cond.GetType() == ConditionReplicaFailure {
				return &appsv1.DeploymentCondition{Type: ConditionReplicaFailure, Status: cond.GetStatus(), Reason: cond.GetReason(),
					Message: cond.GetMessage(), LastUpdateTime: cond.GetLastTransitionTime(), LastTransitionTime: cond.GetLastTransitionTime()}
			}
		}
	}
	return nil
}

// requeueStuck looks at a rollout again when its progress deadline would pass: nothing else
// would wake the controller for a rollout that makes no progress.
func (c *Controller) requeueStuck(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) {
	cur := getCondition(d.Status, ConditionProgressing)
	if !hasProgressDeadline(d) || cur == nil || complete(d, st) || cur.GetReason() == ReasonTimedOut {
		return
	}
	from, err := controller.ParseTime(cur.GetLastUpdateTime())
	if err != nil {
		return
	}
	after := from.Add(time.Duration(d.GetSpec().GetProgressDeadlineSeconds()) * time.Second).Sub(now)
	if after < time.Second {
		c.queue.AddRateLimited(informer.KeyOf(d))
		return
	}
	c.queue.AddAfter(informer.KeyOf(d), after)
}
