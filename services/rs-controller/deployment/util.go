package deployment

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	"github.com/skiff-project/skiff/pkg/controller"
)

// Annotations, as Kubernetes names them.
const (
	// RevisionAnnotation numbers a Deployment's rollouts; its ReplicaSets carry the revision
	// they were last the new ReplicaSet of, and the Deployment carries its current one.
	RevisionAnnotation = "deployment.kubernetes.io/revision"
	// RevisionHistoryAnnotation lists the earlier revisions of a ReplicaSet that a rollback
	// made current again.
	RevisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	// DesiredReplicasAnnotation and MaxReplicasAnnotation record, on each ReplicaSet, the
	// Deployment's size (and size plus surge) when it was last scaled: proportional scaling
	// during a rollout reads them.
	DesiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	MaxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	// ChangeCauseAnnotation is what `rollout history` shows for a revision.
	ChangeCauseAnnotation = "kubernetes.io/change-cause"
	lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

	// maxRevisionHistoryChars bounds RevisionHistoryAnnotation.
	maxRevisionHistoryChars = 2000
)

// Condition types and reasons, as Kubernetes names them.
const (
	ConditionAvailable      = "Available"
	ConditionProgressing    = "Progressing"
	ConditionReplicaFailure = "ReplicaFailure"

	ReasonNewRSAvailable            = "NewReplicaSetAvailable"
	ReasonReplicaSetUpdated         = "ReplicaSetUpdated"
	ReasonTimedOut                  = "ProgressDeadlineExceeded"
	ReasonNewReplicaSet             = "NewReplicaSetCreated"
	ReasonFoundNewRS                = "FoundNewReplicaSet"
	ReasonFailedRSCreate            = "ReplicaSetCreateError"
	ReasonPaused                    = "DeploymentPaused"
	ReasonResumed                   = "DeploymentResumed"
	ReasonMinimumReplicasAvailable  = "MinimumReplicasAvailable"
	ReasonMinimumReplicasUnavailble = "MinimumReplicasUnavailable"
)

// Strategy types.
const (
	RollingUpdate = "RollingUpdate"
	Recreate      = "Recreate"
)

// skipCopy lists the Deployment annotations its ReplicaSets do not inherit.
var skipCopy = map[string]bool{lastAppliedAnnotation: true, RevisionAnnotation: true, RevisionHistoryAnnotation: true,
	DesiredReplicasAnnotation: true, MaxReplicasAnnotation: true}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func dReplicas(d *appsv1.Deployment) int32   { return replicas(d.GetSpec().Replicas) }
func rsReplicas(rs *appsv1.ReplicaSet) int32 { return replicas(rs.GetSpec().Replicas) }

func isRolling(d *appsv1.Deployment) bool {
	t := d.GetSpec().GetStrategy().GetType()
	return t == RollingUpdate || t == ""
}

// resolveFenceposts resolves maxSurge (rounded up) and maxUnavailable (rounded down) against
// the desired replicas; both zero would never progress, so unavailability becomes 1.
func resolveFenceposts(d *appsv1.Deployment) (surge, unavailable int32) {
	ru := d.GetSpec().GetStrategy().GetRollingUpdate()
	desired := int(dReplicas(d))
	s, err := controller.ScaledValue(ru.GetMaxSurge(), desired, true)
	if err != nil {
		s = 0
	}
	u, err := controller.ScaledValue(ru.GetMaxUnavailable(), desired, false)
	if err != nil {
		u = 0
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

// MaxUnavailable is how many of the desired pods may be unavailable during a rolling update.
func MaxUnavailable(d *appsv1.Deployment) int32 {
	if !isRolling(d) || dReplicas(d) == 0 {
		return 0
	}
	_, u := resolveFenceposts(d)
	return min(u, dReplicas(d))
}

// MaxSurge is how many pods above the desired number a rolling update may run.
func MaxSurge(d *appsv1.Deployment) int32 {
	if !isRolling(d) {
		return 0
	}
	s, _ := resolveFenceposts(d)
	return s
}

// revision reads an object's revision annotation (0 when absent or malformed).
func revision(annotations map[string]string) int64 {
	n, err := strconv.ParseInt(annotations[RevisionAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func maxRevision(rss []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range rss {
		m = max(m, revision(rs.GetMetadata().GetAnnotations()))
	}
	return m
}

// byCreation sorts oldest first, ties by name.
func byCreation(rss []*appsv1.ReplicaSet) {
	sort.SliceStable(rss, func(i, j int) bool {
		a, b := rss[i].GetMetadata(), rss[j].GetMetadata()
		ta, _ := controller.ParseTime(a.GetCreationTimestamp())
		tb, _ := controller.ParseTime(b.GetCreationTimestamp())
		if !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return a.GetName() < b.GetName()
	})
}

// byRevision sorts lowest revision first, ties by creation.
func byRevision(rss []*appsv1.ReplicaSet) {
	byCreation(rss)
	sort.SliceStable(rss, func(i, j int) bool {
		return revision(rss[i].GetMetadata().GetAnnotations()) < revision(rss[j].GetMetadata().GetAnnotations())
	})
}

// findNewReplicaSet is the oldest ReplicaSet whose template is the Deployment's (ignoring
// the hash label).
func findNewReplicaSet(d *appsv1.Deployment, rss []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	sorted := append([]*appsv1.ReplicaSet(nil), rss...)
	byCreation(sorted)
	for _, rs := range sorted {
		if controller.EqualIgnoreHash(rs.GetSpec().GetTemplate(), d.GetSpec().GetTemplate()) {
			return rs
		}
	}
	return nil
}

// active are the ReplicaSets asked to run pods.
func active(rss []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range rss {
		if rs != nil && rsReplicas(rs) > 0 {
			out = append(out, rs)
		}
	}
	return out
}

// withNew is old plus new, leaving out a nil new.
func withNew(old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	out := append([]*appsv1.ReplicaSet(nil), old...)
	if newRS != nil {
		out = append(out, newRS)
	}
	return out
}

// podCount is how many pods the ReplicaSets may be running: each one's spec, or its status
// when that is higher (pods above a lowered spec that its controller has not deleted yet).
// Kubernetes counts specs only; counting the status too keeps a rolling update within
// replicas+maxSurge at every moment, not only once each ReplicaSet has caught up.
func podCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += max(rsReplicas(rs), rs.GetStatus().GetReplicas())
		}
	}
	return n
}

// specCount sums the ReplicaSets' spec.replicas.
func specCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += rsReplicas(rs)
		}
	}
	return n
}

// availableCount sums available pods, each ReplicaSet's capped at its spec: pods above a
// lowered spec are about to go and must not be counted on (Kubernetes reads the status
// alone, which lags a scale-down).
func availableCount(rss []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += min(rs.GetStatus().GetAvailableReplicas(), rsReplicas(rs))
		}
	}
	return n
}

func statusSum(rss []*appsv1.ReplicaSet, f func(*appsv1.ReplicaSetStatus) int32) int32 {
	var n int32
	for _, rs := range rss {
		if rs != nil {
			n += f(rs.GetStatus())
		}
	}
	return n
}

// ---- annotations ----

// setReplicasAnnotations records the Deployment's size on a ReplicaSet; it reports a change.
func setReplicasAnnotations(rs *appsv1.ReplicaSet, desired, maxReplicas int32) bool {
	md := rs.GetMetadata()
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	d, m := strconv.Itoa(int(desired)), strconv.Itoa(int(maxReplicas))
	if md.Annotations[DesiredReplicasAnnotation] == d && md.Annotations[MaxReplicasAnnotation] == m {
		return false
	}
	md.Annotations[DesiredReplicasAnnotation], md.Annotations[MaxReplicasAnnotation] = d, m
	return true
}

func replicasAnnotationsNeedUpdate(rs *appsv1.ReplicaSet, desired, maxReplicas int32) bool {
	a := rs.GetMetadata().GetAnnotations()
	return a[DesiredReplicasAnnotation] != strconv.Itoa(int(desired)) || a[MaxReplicasAnnotation] != strconv.Itoa(int(maxReplicas))
}

func annotationInt(rs *appsv1.ReplicaSet, key string) (int32, bool) {
	v, ok := rs.GetMetadata().GetAnnotations()[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0, false
	}
	return int32(n), true
}

// copyAnnotations copies the Deployment's annotations to its ReplicaSet (except those
// skipped); it reports a change.
func copyAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	md := rs.GetMetadata()
	if md.Annotations == nil {
		md.Annotations = map[string]string{}
	}
	changed := false
	for k, v := range d.GetMetadata().GetAnnotations() {
		if skipCopy[k] || md.Annotations[k] == v {
			continue
		}
		md.Annotations[k] = v
		changed = true
	}
	return changed
}

// setNewReplicaSetAnnotations gives the new ReplicaSet the Deployment's annotations and the
// new revision (only ever raising it; a raised revision of an existing ReplicaSet is a
// rollback, whose earlier revision goes into the history annotation). It reports a change.
func setNewReplicaSetAnnotations(d *appsv1.Deployment, rs *appsv1.ReplicaSet, newRevision int64, exists bool) bool {
	changed := copyAnnotations(d, rs)
	a := rs.Metadata.Annotations
	oldStr, had := a[RevisionAnnotation]
	old, err := strconv.ParseInt(oldStr, 10, 64)
	if err != nil {
		if oldStr != "" {
			return changed
		}
		old = 0
	}
	if old < newRevision {
		a[RevisionAnnotation] = strconv.FormatInt(newRevision, 10)
		changed = true
		if had {
			hist := a[RevisionHistoryAnnotation]
			if hist == "" {
				a[RevisionHistoryAnnotation] = oldStr
			} else {
				parts := strings.Split(hist, ",")
				total := len(hist) + len(oldStr) + 1
				start := 0
				for total > maxRevisionHistoryChars && start < len(parts) {
					total -= len(parts[start]) + 1
					start++
				}
				if total <= maxRevisionHistoryChars {
					a[RevisionHistoryAnnotation] = strings.Join(append(parts[start:], oldStr), ",")
				}
			}
		}
	}
	if !exists && setReplicasAnnotations(rs, dReplicas(d), dReplicas(d)+MaxSurge(d)) {
		changed = true
	}
	return changed
}

// ---- conditions ----

func newCondition(typ, status, reason, message string, now time.Time) *appsv1.DeploymentCondition {
	ts := controller.Timestamp(now)
	return &appsv1.DeploymentCondition{Type: typ, Status: status, Reason: reason, Message: message,
		LastUpdateTime: ts, LastTransitionTime: ts}
}

func getCondition(st *appsv1.DeploymentStatus, typ string) *appsv1.DeploymentCondition {
	for _, c := range st.GetConditions() {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

// setCondition sets c unless the same status and reason are already there; an unchanged
// status keeps its transition time.
func setCondition(st *appsv1.DeploymentStatus, c *appsv1.DeploymentCondition) {
	cur := getCondition(st, c.GetType())
	if cur != nil && cur.GetStatus() == c.GetStatus() && cur.GetReason() == c.GetReason() {
		return
	}
	if cur != nil && cur.GetStatus() == c.GetStatus() {
		c.LastTransitionTime = cur.GetLastTransitionTime()
	}
	removeCondition(st, c.GetType())
	st.Conditions = append(st.Conditions, c)
}

func removeCondition(st *appsv1.DeploymentStatus, typ string) {
	out := st.Conditions[:0]
	for _, c := range st.Conditions {
		if c.GetType() != typ {
			out = append(out, c)
		}
	}
	st.Conditions = out
}

func hasProgressDeadline(d *appsv1.Deployment) bool {
	return d.GetSpec().ProgressDeadlineSeconds != nil && d.GetSpec().GetProgressDeadlineSeconds() != 1<<31-1
}

// complete: every desired pod is updated and available, and nothing else runs.
func complete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	want := dReplicas(d)
	return st.GetUpdatedReplicas() == want && st.GetReplicas() == want && st.GetAvailableReplicas() == want &&
		st.GetObservedGeneration() >= d.GetMetadata().GetGeneration()
}

// progressing: the new status shows progress over the Deployment's last one.
func progressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	old := d.GetStatus()
	return st.GetUpdatedReplicas() > old.GetUpdatedReplicas() ||
		st.GetReplicas()-st.GetUpdatedReplicas() < old.GetReplicas()-old.GetUpdatedReplicas() ||
		st.GetReadyReplicas() > old.GetReadyReplicas() || st.GetAvailableReplicas() > old.GetAvailableReplicas()
}

// timedOut: no progress was recorded for progressDeadlineSeconds.
func timedOut(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) bool {
	c := getCondition(st, ConditionProgressing)
	if c == nil || c.GetReason() == ReasonNewRSAvailable {
		return false
	}
	if c.GetReason() == ReasonTimedOut {
		return true
	}
	from, err := controller.ParseTime(c.GetLastUpdateTime())
	if err != nil {
		return false
	}
	return from.Add(time.Duration(d.GetSpec().GetProgressDeadlineSeconds()) * time.Second).Before(now)
}

func cloneStatus(st *appsv1.DeploymentStatus) *appsv1.DeploymentStatus {
	if st == nil {
		return &appsv1.DeploymentStatus{}
	}
	return proto.Clone(st).(*appsv1.DeploymentStatus)
}
