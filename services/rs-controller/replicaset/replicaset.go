// Package replicaset is the ReplicaSet controller: it keeps spec.replicas active pods matching
// each ReplicaSet's selector, as Kubernetes' does. It creates missing pods from the template
// (generateName, a controller owner reference), adopts matching orphans and releases pods that
// stop matching, deletes extras in Kubernetes' order (unscheduled, pending, not ready, then the
// most recently ready and newest), and writes status (replicas, fullyLabeledReplicas,
// readyReplicas, availableReplicas, observedGeneration).
//
// It is level-triggered: every reconcile starts from the informers' caches. Expectations stop
// it from acting again on a cache that has not yet seen its own creations and deletions, so it
// never overshoots while events lag; a restarted controller starts from a fresh list and has
// nothing to wait for.
package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/labels"
	"github.com/skiff-project/skiff/pkg/record"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// Name is the controller's name in logs, metrics, events and --controllers.
const Name = "replicaset"

// DefaultBurstReplicas bounds the creations or deletions of one reconcile (Kubernetes' 500).
const DefaultBurstReplicas = 500

// podsByController indexes pods by their controller's uid, and pods without a controller by
// "orphan/" + namespace: a reconcile reads its own pods and the orphans it may adopt, not the
// whole namespace.
const podsByController = "replicaset-controller-uid"

func controllerIndex(obj scheme.Object) ([]string, error) {
	md := obj.GetMetadata()
	if ref := controller.ControllerOf(md); ref != nil {
		return []string{ref.GetUid()}, nil
	}
	return []string{"orphan/" + md.GetNamespace()}, nil
}

// podDeletionCost is the annotation that ranks pods for scale-down (lower goes first).
const podDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

// Config configures the controller.
type Config struct {
	Client    client.Interface
	Informers *informer.Factory
	Recorder  *record.Recorder // nil: no Events
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	// Workers reconcile different ReplicaSets in parallel (Kubernetes' default 5).
	Workers int
	// BurstReplicas bounds creations and deletions per reconcile.
	BurstReplicas int
}

// Controller is the ReplicaSet controller.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	rsKind  *scheme.Kind
	podKind *scheme.Kind
	rsInf   *informer.Informer
	podInf  *informer.Informer
	queue   *workqueue.Queue[string]
	exp     *controller.Expectations
	metrics *controller.Metrics
}

// New builds the controller and registers its informer handlers; call Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("replicaset: Config needs Client and Informers")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 5
	}
	if cfg.BurstReplicas <= 0 {
		cfg.BurstReplicas = DefaultBurstReplicas
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := cfg.Client.Scheme()
	c := &Controller{cfg: cfg, log: log.With("controller", Name), exp: controller.NewExpectations(),
		queue: workqueue.New[string](workqueue.WithName(Name)), metrics: controller.NewMetrics(cfg.Metrics)}
	c.rsKind, _ = s.ForName("replicasets")
	c.podKind, _ = s.ForName("pods")
	c.rsInf = cfg.Informers.For(c.rsKind)
	c.podInf = cfg.Informers.For(c.podKind)
	if err := c.podInf.Store().AddIndexers(informer.Indexers{podsByController: controllerIndex}); err != nil {
		return nil, err
	}
	c.rsInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { c.queue.Add(informer.KeyOf(obj)) },
		UpdateFunc: func(_, obj scheme.Object) { c.queue.Add(informer.KeyOf(obj)) },
		DeleteFunc: func(obj scheme.Object) { c.exp.Delete(informer.KeyOf(obj)) },
	})
	c.podInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { c.addPod(obj.(*corev1.Pod)) },
		UpdateFunc: func(old, obj scheme.Object) { c.updatePod(old.(*corev1.Pod), obj.(*corev1.Pod)) },
		DeleteFunc: func(obj scheme.Object) { c.deletePod(obj.(*corev1.Pod)) },
	})
	return c, nil
}

// Expectations exposes the controller's expectations (for tests).
func (c *Controller) Expectations() *controller.Expectations { return c.exp }

// Run reconciles until ctx ends. It starts the informers it needs (the factory may be shared)
// and waits for their caches first.
func (c *Controller) Run(ctx context.Context) error {
	c.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, c.rsInf, c.podInf) {
		return ctx.Err()
	}
	c.log.Info("controller started", "replicasets", c.rsInf.Store().Len(), "pods", c.podInf.Store().Len())
	workqueue.Run(ctx, c.queue, c.cfg.Workers, func(ctx context.Context, key string) error {
		start := time.Now()
		err := c.sync(ctx, key)
		c.metrics.Observe(Name, start, err)
		if err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			c.log.Warn("reconcile failed; will retry", "replicaset", key, "error", err)
		}
		return err
	})
	return nil
}

// ---- event handlers: map pod changes to the ReplicaSets that care ----

// resolve returns the ReplicaSet a controller reference names, if it is the one cached.
func (c *Controller) resolve(ns string, ref *metav1.OwnerReference) *appsv1.ReplicaSet {
	if ref.GetKind() != c.rsKind.Kind || ref.GetApiVersion() != c.rsKind.APIVersion() {
		return nil
	}
	obj, ok := c.rsInf.Store().Get(ns, ref.GetName())
	if !ok || obj.GetMetadata().GetUid() != ref.GetUid() {
		return nil
	}
	return obj.(*appsv1.ReplicaSet)
}

// selectingReplicaSets are the ReplicaSets in the pod's namespace whose selector matches it.
func (c *Controller) selectingReplicaSets(pod *corev1.Pod) []*appsv1.ReplicaSet {
	objs, _ := c.rsInf.Store().ByIndex(informer.NamespaceIndex, pod.GetMetadata().GetNamespace())
	var out []*appsv1.ReplicaSet
	for _, obj := range objs {
		rs := obj.(*appsv1.ReplicaSet)
		sel, err := labels.FromLabelSelector(rs.GetSpec().GetSelector())
		if err != nil || sel.Empty() {
			continue
		}
		if sel.Matches(pod.GetMetadata().GetLabels()) {
			out = append(out, rs)
		}
	}
	return out
}

func (c *Controller) addPod(pod *corev1.Pod) {
	if pod.GetMetadata().GetDeletionTimestamp() != "" {
		// Seen for the first time already being deleted (e.g. after a relist).
		c.deletePod(pod)
		return
	}
	if ref := controller.ControllerOf(pod.GetMetadata()); ref != nil {
		rs := c.resolve(pod.GetMetadata().GetNamespace(), ref)
		if rs == nil {
			return
		}
		key := informer.KeyOf(rs)
		c.exp.CreationObserved(key)
		c.queue.Add(key)
		return
	}
	// An orphan: whoever selects it may adopt it.
	for _, rs := range c.selectingReplicaSets(pod) {
		c.queue.Add(informer.KeyOf(rs))
	}
}

func (c *Controller) updatePod(old, cur *corev1.Pod) {
	if old.GetMetadata().GetResourceVersion() == cur.GetMetadata().GetResourceVersion() {
		return
	}
	labelsChanged := !maps.Equal(old.GetMetadata().GetLabels(), cur.GetMetadata().GetLabels())
	if cur.GetMetadata().GetDeletionTimestamp() != "" {
		// Marked for deletion (gracefully): its ReplicaSet counts it as gone now, so that a
		// replacement starts while it stops.
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(old)
		}
		return
	}
	curRef, oldRef := controller.ControllerOf(cur.GetMetadata()), controller.ControllerOf(old.GetMetadata())
	refChanged := !proto.Equal(curRef, oldRef)
	if refChanged && oldRef != nil {
		if rs := c.resolve(old.GetMetadata().GetNamespace(), oldRef); rs != nil {
			c.queue.Add(informer.KeyOf(rs))
		}
	}
	if curRef != nil {
		rs := c.resolve(cur.GetMetadata().GetNamespace(), curRef)
		if rs == nil {
			return
		}
		c.queue.Add(informer.KeyOf(rs))
		return
	}
	if labelsChanged || refChanged {
		for _, rs := range c.selectingReplicaSets(cur) {
			c.queue.Add(informer.KeyOf(rs))
		}
	}
}

func (c *Controller) deletePod(pod *corev1.Pod) {
	ref := controller.ControllerOf(pod.GetMetadata())
	if ref == nil {
		return
	}
	rs := c.resolve(pod.GetMetadata().GetNamespace(), ref)
	if rs == nil {
		return
	}
	key := informer.KeyOf(rs)
	c.exp.DeletionObserved(key, informer.KeyOf(pod))
	c.queue.Add(key)
}

// ---- reconcile ----

func (c *Controller) sync(ctx context.Context, key string) error {
	obj, ok := c.rsInf.Store().GetByKey(key)
	if !ok {
		c.exp.Delete(key)
		return nil
	}
	rs := obj.(*appsv1.ReplicaSet)
	needsSync := c.exp.Satisfied(key)
	sel, err := labels.FromLabelSelector(rs.GetSpec().GetSelector())
	if err != nil || sel.Empty() {
		// Validation refuses these; a ReplicaSet selecting everything must not adopt the
		// namespace.
		c.log.Warn("ignoring replicaset with an unusable selector", "replicaset", key, "error", err)
		return nil
	}

	own, _ := c.podInf.Store().ByIndex(podsByController, rs.GetMetadata().GetUid())
	orphans, _ := c.podInf.Store().ByIndex(podsByController, "orphan/"+rs.GetMetadata().GetNamespace())
	all := append(own, orphans...)
	active := make([]scheme.Object, 0, len(all))
	for _, p := range all {
		if controller.IsPodActive(p.(*corev1.Pod)) {
			active = append(active, p)
		}
	}
	refs := &controller.RefManager{Client: c.cfg.Client, OwnerKind: c.rsKind, Owner: rs, Selector: sel,
		CanAdopt: controller.RecheckOwner(c.cfg.Client, c.rsKind, rs)}
	claimedObjs, claimErr := refs.Claim(ctx, active)
	claimed := make([]*corev1.Pod, len(claimedObjs))
	for i, o := range claimedObjs {
		claimed[i] = o.(*corev1.Pod)
	}

	var manageErr error
	// Only with every matching pod claimed: one left out by a failed adoption would be
	// replaced now and counted as an extra later (Kubernetes' syncReplicaSet stops there too).
	if needsSync && claimErr == nil && rs.GetMetadata().GetDeletionTimestamp() == "" {
		manageErr = c.manageReplicas(ctx, key, claimed, rs)
	}
	now := time.Now()
	status := calculateStatus(rs, claimed, manageErr, now)
	if err := c.updateStatus(ctx, rs, status); err != nil {
		return errors.Join(err, claimErr, manageErr)
	}
	// A ready pod becomes available minReadySeconds later, with no event to say so: look
	// again then.
	if at, ok := nextAvailable(claimed, rs.GetSpec().GetMinReadySeconds(), now); ok {
		c.queue.AddAfter(key, at.Sub(now)+100*time.Millisecond)
	}
	return errors.Join(claimErr, manageErr)
}

// nextAvailable is the earliest time a ready but not yet available pod becomes available.
func nextAvailable(pods []*corev1.Pod, minReady int32, now time.Time) (time.Time, bool) {
	if minReady <= 0 {
		return time.Time{}, false
	}
	var next time.Time
	for _, p := range pods {
		at, ok := controller.AvailableAt(p, minReady)
		if ok && at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// manageReplicas creates or deletes pods so that claimed reaches spec.replicas, at most
// BurstReplicas at a time.
func (c *Controller) manageReplicas(ctx context.Context, key string, claimed []*corev1.Pod, rs *appsv1.ReplicaSet) error {
	diff := len(claimed) - int(replicasOf(rs))
	switch {
	case diff < 0:
		n := min(-diff, c.cfg.BurstReplicas)
		c.exp.ExpectCreations(key, n)
		c.log.Debug("creating pods", "replicaset", key, "want", replicasOf(rs), "have", len(claimed), "creating", n)
		attempted, err := slowStartBatch(n, 1, func() error {
			err := c.createPod(ctx, rs)
			if err != nil {
				// This creation will never be observed.
				c.exp.CreationObserved(key)
				if apierrors.HasStatusCause(err, apierrors.CauseNamespaceTerminating) {
					return nil // the namespace is going away; so will this ReplicaSet
				}
			}
			return err
		})
		// Creations never attempted will never be observed either.
		for range n - attempted {
			c.exp.CreationObserved(key)
		}
		return err
	case diff > 0:
		n := min(diff, c.cfg.BurstReplicas)
		victims := podsToDelete(claimed, n)
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = informer.KeyOf(p)
		}
		c.exp.ExpectDeletions(key, keys)
		c.log.Debug("deleting pods", "replicaset", key, "want", replicasOf(rs), "have", len(claimed), "deleting", n)
		var wg sync.WaitGroup
		errs := make([]error, len(victims))
		for i, p := range victims {
			wg.Go(func() {
				md := p.GetMetadata()
				_, err := c.cfg.Client.Delete(ctx, c.podKind, md.GetNamespace(), md.GetName(), client.DeleteOptions{UID: md.GetUid()})
				if err != nil {
					// Its deletion will not be observed as ours.
					c.exp.DeletionObserved(key, keys[i])
					if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
						return // gone already, or replaced by a namesake: nothing of ours to delete
					}
					errs[i] = fmt.Errorf("delete pod %s: %w", md.GetName(), err)
					c.event(rs, record.Warning, "FailedDelete", "Error deleting: %v", err)
					return
				}
				c.event(rs, record.Normal, "SuccessfulDelete", "Deleted pod: %s", md.GetName())
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	return nil
}

// slowStartBatch calls fn count times in batches of 1, 2, 4, ... in parallel, stopping after
// the first batch with an error: when the API refuses (a quota, a full namespace), it refuses
// a few requests, not hundreds. It returns how many calls were made.
func slowStartBatch(count, initial int, fn func() error) (attempted int, err error) {
	remaining := count
	for batch := min(remaining, initial); batch > 0; batch = min(2*batch, remaining) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Go(func() {
				if err := fn(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		attempted += batch
		if len(errs) > 0 {
			return attempted, <-errs
		}
		remaining -= batch
	}
	return attempted, nil
}

// createPod creates one pod from the ReplicaSet's template.
func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet) error {
	tmpl := rs.GetSpec().GetTemplate()
	md := rs.GetMetadata()
	pod := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{
			GenerateName:    md.GetName() + "-",
			Namespace:       md.GetNamespace(),
			Labels:          maps.Clone(tmpl.GetMetadata().GetLabels()),
			Annotations:     maps.Clone(tmpl.GetMetadata().GetAnnotations()),
			Finalizers:      append([]string(nil), tmpl.GetMetadata().GetFinalizers()...),
			OwnerReferences: []*metav1.OwnerReference{controller.NewControllerRef(c.rsKind, md)},
		},
		Spec: proto.Clone(tmpl.GetSpec()).(*corev1.PodSpec),
	}
	if pod.Spec == nil {
		pod.Spec = &corev1.PodSpec{}
	}
	created, err := c.cfg.Client.Create(ctx, pod)
	if err != nil {
		if !apierrors.HasStatusCause(err, apierrors.CauseNamespaceTerminating) {
			c.event(rs, record.Warning, "FailedCreate", "Error creating: %v", err)
		}
		return fmt.Errorf("create pod: %w", err)
	}
	c.event(rs, record.Normal, "SuccessfulCreate", "Created pod: %s", created.GetMetadata().GetName())
	return nil
}

func (c *Controller) event(rs *appsv1.ReplicaSet, typ, reason, format string, args ...any) {
	if c.cfg.Recorder == nil {
		return
	}
	obj := proto.Clone(rs).(*appsv1.ReplicaSet)
	scheme.SetTypeMeta(obj, c.rsKind.APIVersion(), c.rsKind.Kind)
	c.cfg.Recorder.Eventf(obj, typ, reason, format, args...)
}

func replicasOf(rs *appsv1.ReplicaSet) int32 {
	if rs.GetSpec().Replicas == nil {
		return 1
	}
	return rs.GetSpec().GetReplicas()
}

// ---- which pods go first ----

var phaseOrdinal = map[string]int{controller.PodPending: 0, controller.PodUnknown: 1, controller.PodRunning: 2}

// podsToDelete picks n pods in Kubernetes' order of preference (ActivePodsWithRanks):
// unassigned before assigned, pending before unknown before running, not ready before ready,
// lower pod-deletion-cost first, pods doubled up on a node before lone ones, ready for less
// time before longer, more restarts before fewer, newer before older.
func podsToDelete(pods []*corev1.Pod, n int) []*corev1.Pod {
	if n >= len(pods) {
		return pods
	}
	perNode := map[string]int{}
	for _, p := range pods {
		if node := p.GetSpec().GetNodeName(); node != "" {
			perNode[node]++
		}
	}
	sorted := append([]*corev1.Pod(nil), pods...)
	// A stable order first, so that ties break the same way every time.
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetMetadata().GetName() < sorted[j].GetMetadata().GetName() })
	sort.SliceStable(sorted, func(i, j int) bool { return deleteFirst(sorted[i], sorted[j], perNode) })
	return sorted[:n]
}

func deleteFirst(a, b *corev1.Pod, perNode map[string]int) bool {
	na, nb := a.GetSpec().GetNodeName(), b.GetSpec().GetNodeName()
	if na != nb && (na == "" || nb == "") {
		return na == ""
	}
	if pa, pb := phaseOrdinal[a.GetStatus().GetPhase()], phaseOrdinal[b.GetStatus().GetPhase()]; pa != pb {
		return pa < pb
	}
	ra, rb := controller.IsPodReady(a), controller.IsPodReady(b)
	if ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		return ca < cb
	}
	if da, db := perNode[na], perNode[nb]; da != db {
		return da > db
	}
	if ra && rb {
		ta, tb := readySince(a), readySince(b)
		if !ta.Equal(tb) {
			return afterOrZero(ta, tb)
		}
	}
	if xa, xb := maxRestarts(a), maxRestarts(b); xa != xb {
		return xa > xb
	}
	ca, _ := controller.ParseTime(a.GetMetadata().GetCreationTimestamp())
	cb, _ := controller.ParseTime(b.GetMetadata().GetCreationTimestamp())
	if !ca.Equal(cb) {
		return afterOrZero(ca, cb)
	}
	return false
}

// afterOrZero: a zero time sorts first, then later before earlier.
func afterOrZero(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero()
	}
	return a.After(b)
}

func deletionCost(p *corev1.Pod) int64 {
	v, ok := p.GetMetadata().GetAnnotations()[podDeletionCost]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}

func readySince(p *corev1.Pod) time.Time {
	if c := controller.PodReadyCondition(p); c != nil {
		t, _ := controller.ParseTime(c.GetLastTransitionTime())
		return t
	}
	return time.Time{}
}

func maxRestarts(p *corev1.Pod) int32 {
	var m int32
	for _, cs := range p.GetStatus().GetContainerStatuses() {
		m = max(m, cs.GetRestartCount())
	}
	return m
}

// ---- status ----

const replicaFailure = "ReplicaFailure"

// calculateStatus is the status the claimed pods give the ReplicaSet.
func calculateStatus(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error, now time.Time) *appsv1.ReplicaSetStatus {
	st := &appsv1.ReplicaSetStatus{Replicas: int32(len(pods)), ObservedGeneration: rs.GetMetadata().GetGeneration()}
	templateLabels := labels.SelectorFromSet(rs.GetSpec().GetTemplate().GetMetadata().GetLabels())
	minReady := rs.GetSpec().GetMinReadySeconds()
	for _, p := range pods {
		if templateLabels.Matches(p.GetMetadata().GetLabels()) {
			st.FullyLabeledReplicas++
		}
		if controller.IsPodReady(p) {
			st.ReadyReplicas++
			if controller.IsPodAvailable(p, minReady, now) {
				st.AvailableReplicas++
			}
		}
	}
	for _, cond := range rs.GetStatus().GetConditions() {
		if cond.GetType() != replicaFailure {
			st.Conditions = append(st.Conditions, proto.Clone(cond).(*appsv1.ReplicaSetCondition))
		}
	}
	failed := manageErr != nil && len(pods) < int(replicasOf(rs))
	if failed {
		reason := "FailedCreate"
		cond := &appsv1.ReplicaSetCondition{Type: replicaFailure, Status: controller.ConditionTrue, Reason: reason,
			Message: manageErr.Error(), LastTransitionTime: controller.Timestamp(now)}
		// As Kubernetes: a condition with the same status and reason is kept as it is (a new
		// message each time, such as a generated pod name, would make every failed attempt a
		// status write and an event that retries at once, defeating the back-off).
		for _, old := range rs.GetStatus().GetConditions() {
			if old.GetType() == replicaFailure && old.GetStatus() == controller.ConditionTrue && old.GetReason() == reason {
				cond = proto.Clone(old).(*appsv1.ReplicaSetCondition)
			}
		}
		st.Conditions = append(st.Conditions, cond)
	}
	return st
}

// updateStatus writes status when it differs from the cached one. A conflict retries once on
// a fresh read: the status comes from the pods, not from the object it is written to.
func (c *Controller) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, st *appsv1.ReplicaSetStatus) error {
	if proto.Equal(rs.GetStatus(), st) {
		return nil
	}
	next := proto.Clone(rs).(*appsv1.ReplicaSet)
	for attempt := 0; ; attempt++ {
		next.Status = st
		_, err := c.cfg.Client.UpdateStatus(ctx, next)
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt > 0 {
			return fmt.Errorf("update status: %w", err)
		}
		fresh, gerr := c.cfg.Client.Get(ctx, c.rsKind, rs.GetMetadata().GetNamespace(), rs.GetMetadata().GetName())
		if gerr != nil {
			return fmt.Errorf("update status: %w", err)
		}
		next = fresh.(*appsv1.ReplicaSet)
		if next.GetMetadata().GetUid() != rs.GetMetadata().GetUid() {
			return nil
		}
	}
}
