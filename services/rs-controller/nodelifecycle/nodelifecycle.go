// Package nodelifecycle is the node lifecycle controller: it notices nodes that stop
// heartbeating and moves their pods elsewhere, as Kubernetes' node lifecycle controller and
// taint eviction controller do.
//
// A node's heartbeat is its Lease in kube-node-lease (renewed by its kubelet every 10 s) or its
// Ready condition's lastHeartbeatTime; the controller notes when it last saw either change, on
// its own clock (so clock skew between nodes and control plane does not matter, and a
// restarted controller gives every node a fresh grace period). A node silent for longer than
// the grace period (default 40 s) gets Ready=Unknown. A node whose Ready condition is Unknown
// gets the node.kubernetes.io/unreachable taint, one whose Ready is False the
// node.kubernetes.io/not-ready taint, each with effect NoSchedule (no new pods; the scheduler
// honours it) and NoExecute (pods leave); a Ready node loses them. Pods on a node that is not
// ready are marked not ready (so Endpoints drop them at once).
//
// Eviction: a pod on a node with NoExecute taints is deleted as soon as it does not tolerate
// one of them, or once the shortest tolerationSeconds of the tolerations it uses has passed
// since the taint was added (the apiserver gives every pod 300 s tolerations of both taints
// unless it has its own). Deletion is the ordinary graceful one; the pod's controller creates
// a replacement at once (a pod being deleted no longer counts) and the scheduler places it on
// a node without the taint.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/record"
	"github.com/skiff-project/skiff/pkg/taints"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// Name is the controller's name in logs, metrics, events and --controllers.
const Name = "nodelifecycle"

// NodeLeaseNamespace holds the nodes' heartbeat Leases.
const NodeLeaseNamespace = "kube-node-lease"

// Defaults, as Kubernetes' kube-controller-manager has them.
const (
	DefaultGracePeriod   = 40 * time.Second
	DefaultMonitorPeriod = 5 * time.Second
)

// podsByNode indexes pods by the node they are bound to.
const podsByNode = "nodelifecycle-node"

// Config configures the controller.
type Config struct {
	Client    client.Interface
	Informers *informer.Factory
	Recorder  *record.Recorder // nil: no Events
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	// GracePeriod is how long a node may go without a heartbeat before it is Unknown.
	GracePeriod time.Duration
	// MonitorPeriod is how often nodes are checked.
	MonitorPeriod time.Duration
	// Workers evict pods in parallel.
	Workers int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// health is what the controller last saw of a node's heartbeats, and when.
type health struct {
	leaseRenew string // the Lease's renewTime
	heartbeat  string // the Ready condition's lastHeartbeatTime
	probed     time.Time
}

// Controller is the node lifecycle controller.
type Controller struct {
	cfg      Config
	log      *slog.Logger
	nodeKind *scheme.Kind
	podKind  *scheme.Kind
	nodeInf  *informer.Informer
	leaseInf *informer.Informer
	podInf   *informer.Informer
	evict    *workqueue.Queue[string] // pod keys
	metrics  *controller.Metrics

	mu     sync.Mutex
	health map[string]*health
}

// New builds the controller; call Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("nodelifecycle: Config needs Client and Informers")
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.MonitorPeriod <= 0 {
		cfg.MonitorPeriod = DefaultMonitorPeriod
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := cfg.Client.Scheme()
	c := &Controller{cfg: cfg, log: log.With("controller", Name), evict: workqueue.New[string](workqueue.WithName(Name)),
		metrics: controller.NewMetrics(cfg.Metrics), health: map[string]*health{}}
	c.nodeKind, _ = s.ForName("nodes")
	c.podKind, _ = s.ForName("pods")
	leaseKind, _ := s.ForName("leases")
	c.nodeInf = cfg.Informers.For(c.nodeKind)
	c.leaseInf = cfg.Informers.ForNamespace(leaseKind, NodeLeaseNamespace)
	c.podInf = cfg.Informers.For(c.podKind)
	if err := c.podInf.Store().AddIndexers(informer.Indexers{podsByNode: informer.FieldIndexFunc("spec.nodeName")}); err != nil {
		return nil, err
	}
	c.nodeInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { c.nodeChanged(nil, obj.(*corev1.Node)) },
		UpdateFunc: func(old, obj scheme.Object) { c.nodeChanged(old.(*corev1.Node), obj.(*corev1.Node)) },
		DeleteFunc: func(obj scheme.Object) { c.forget(obj.GetMetadata().GetName()) },
	})
	c.leaseInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { c.leaseChanged(obj.(*coordinationv1.Lease)) },
		UpdateFunc: func(_, obj scheme.Object) { c.leaseChanged(obj.(*coordinationv1.Lease)) },
	})
	c.podInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { c.podChanged(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj scheme.Object) { c.podChanged(obj.(*corev1.Pod)) },
	})
	return c, nil
}

// Run monitors nodes and evicts pods until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, c.nodeInf, c.leaseInf, c.podInf) {
		return ctx.Err()
	}
	c.log.Info("controller started", "nodes", c.nodeInf.Store().Len(), "gracePeriod", c.cfg.GracePeriod)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(c.cfg.MonitorPeriod)
		defer t.Stop()
		for {
			start := time.Now()
			err := c.monitor(ctx)
			c.metrics.Observe(Name, start, err)
			if err != nil && ctx.Err() == nil {
				c.log.Warn("node monitoring pass failed", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	workqueue.Run(ctx, c.evict, c.cfg.Workers, c.syncPod)
	wg.Wait()
	return nil
}

// ---- heartbeats ----

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for _, cond := range n.GetStatus().GetConditions() {
		if cond.GetType() == "Ready" {
			return cond
		}
	}
	return nil
}

// probe records a heartbeat observation of node: a change of what is is a sign of life.
func (c *Controller) probe(node string, update func(h *health) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.health[node]
	if !ok {
		// First sight: the node gets a whole grace period from now.
		h = &health{probed: c.cfg.Now()}
		c.health[node] = h
	}
	if update(h) {
		h.probed = c.cfg.Now()
	}
}

func (c *Controller) nodeChanged(old, n *corev1.Node) {
	name := n.GetMetadata().GetName()
	beat := ""
	if rc := readyCondition(n); rc != nil {
		beat = rc.GetLastHeartbeatTime()
	}
	c.probe(name, func(h *health) bool {
		changed := h.heartbeat != beat
		h.heartbeat = beat
		return changed
	})
	// Pods on a node whose NoExecute taints changed may have to go (or may stay after all).
	if old == nil || !slices.EqualFunc(noExecute(old), noExecute(n), func(a, b *corev1.Taint) bool { return proto.Equal(a, b) }) {
		pods, _ := c.podInf.Store().ByIndex(podsByNode, name)
		for _, p := range pods {
			c.evict.Add(informer.KeyOf(p))
		}
	}
}

func (c *Controller) leaseChanged(l *coordinationv1.Lease) {
	renew := l.GetSpec().GetRenewTime()
	c.probe(l.GetMetadata().GetName(), func(h *health) bool {
		changed := h.leaseRenew != renew
		h.leaseRenew = renew
		return changed
	})
}

func (c *Controller) forget(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.health, node)
}

func (c *Controller) silentFor(node string, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.health[node]
	if !ok {
		c.health[node] = &health{probed: now}
		return 0
	}
	return now.Sub(h.probed)
}

// ---- monitoring ----

// monitor checks every node once: silent ones become Unknown, taints follow the Ready
// condition, and pods on nodes that are not ready are marked not ready.
func (c *Controller) monitor(ctx context.Context) error {
	now := c.cfg.Now()
	var errs []error
	for _, obj := range c.nodeInf.Store().List() {
		n := obj.(*corev1.Node)
		name := n.GetMetadata().GetName()
		if silent := c.silentFor(name, now); silent > c.cfg.GracePeriod {
			updated, err := c.markUnknown(ctx, n, now)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			n = updated
		}
		if err := c.reconcileTaints(ctx, n, now); err != nil {
			errs = append(errs, err)
		}
		if rc := readyCondition(n); rc != nil && rc.GetStatus() != controller.ConditionTrue {
			if err := c.markPodsNotReady(ctx, name, now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// markUnknown sets the Ready condition of a silent node to Unknown (once).
func (c *Controller) markUnknown(ctx context.Context, n *corev1.Node, now time.Time) (*corev1.Node, error) {
	rc := readyCondition(n)
	if rc != nil && rc.GetStatus() == controller.ConditionUnknown {
		return n, nil
	}
	next := proto.Clone(n).(*corev1.Node)
	if next.Status == nil {
		next.Status = &corev1.NodeStatus{}
	}
	ts := controller.Timestamp(now)
	if rc = readyCondition(next); rc == nil {
		next.Status.Conditions = append(next.Status.Conditions, &corev1.NodeCondition{Type: "Ready", Status: controller.ConditionUnknown,
			Reason: "NodeStatusNeverUpdated", Message: "Kubelet never posted node status.", LastHeartbeatTime: ts, LastTransitionTime: ts})
	} else {
		rc.Status, rc.Reason, rc.Message, rc.LastTransitionTime = controller.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status.", ts
	}
	res, err := c.cfg.Client.UpdateStatus(ctx, next)
	if err != nil {
		return nil, fmt.Errorf("mark node %s Unknown: %w", n.GetMetadata().GetName(), err)
	}
	c.log.Info("node stopped heartbeating; Ready is Unknown", "node", n.GetMetadata().GetName(), "gracePeriod", c.cfg.GracePeriod)
	c.event(n, record.Normal, "NodeNotReady", "Node %s status is now: NodeNotReady", n.GetMetadata().GetName())
	return res.(*corev1.Node), nil
}

// wantTaint is the condition taint key a node's Ready condition calls for ("" for none).
func wantTaint(n *corev1.Node) string {
	rc := readyCondition(n)
	switch {
	case rc == nil:
		return "" // never reported: the grace period decides
	case rc.GetStatus() == controller.ConditionFalse:
		return taints.NotReady
	case rc.GetStatus() == controller.ConditionUnknown:
		return taints.Unreachable
	}
	return ""
}

// reconcileTaints puts the node's not-ready/unreachable taints (NoSchedule and NoExecute) in
// line with its Ready condition.
func (c *Controller) reconcileTaints(ctx context.Context, n *corev1.Node, now time.Time) error {
	want := wantTaint(n)
	var kept []*corev1.Taint
	have := map[string]bool{}
	for _, t := range n.GetSpec().GetTaints() {
		if t.GetKey() == taints.NotReady || t.GetKey() == taints.Unreachable {
			if t.GetKey() != want || (t.GetEffect() != taints.NoSchedule && t.GetEffect() != taints.NoExecute) {
				continue
			}
			have[t.GetEffect()] = true
		}
		kept = append(kept, t)
	}
	if want != "" {
		for _, effect := range []string{taints.NoSchedule, taints.NoExecute} {
			if !have[effect] {
				kept = append(kept, &corev1.Taint{Key: want, Effect: effect, TimeAdded: controller.Timestamp(now)})
			}
		}
	}
	if slices.EqualFunc(kept, n.GetSpec().GetTaints(), func(a, b *corev1.Taint) bool { return proto.Equal(a, b) }) {
		return nil
	}
	next := proto.Clone(n).(*corev1.Node)
	if next.Spec == nil {
		next.Spec = &corev1.NodeSpec{}
	}
	next.Spec.Taints = kept
	if _, err := c.cfg.Client.Update(ctx, next); err != nil {
		return fmt.Errorf("taint node %s: %w", n.GetMetadata().GetName(), err)
	}
	if want != "" {
		c.log.Info("node tainted", "node", n.GetMetadata().GetName(), "taint", want)
	} else {
		c.log.Info("node taints removed", "node", n.GetMetadata().GetName())
	}
	return nil
}

// markPodsNotReady sets Ready=False on the pods of a node that is not ready: their kubelet
// cannot say they serve.
func (c *Controller) markPodsNotReady(ctx context.Context, node string, now time.Time) error {
	pods, _ := c.podInf.Store().ByIndex(podsByNode, node)
	var errs []error
	for _, obj := range pods {
		p := obj.(*corev1.Pod)
		if !controller.IsPodReady(p) || controller.IsPodTerminal(p) {
			continue
		}
		next := proto.Clone(p).(*corev1.Pod)
		for _, cond := range next.GetStatus().GetConditions() {
			if cond.GetType() == controller.PodReady || cond.GetType() == "ContainersReady" {
				cond.Status, cond.LastTransitionTime = controller.ConditionFalse, controller.Timestamp(now)
			}
		}
		if _, err := c.cfg.Client.UpdateStatus(ctx, next); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("mark pod %s not ready: %w", informer.KeyOf(p), err))
		}
	}
	return errors.Join(errs...)
}

// ---- taint-based eviction ----

func noExecute(n *corev1.Node) []*corev1.Taint {
	var out []*corev1.Taint
	for _, t := range n.GetSpec().GetTaints() {
		if t.GetEffect() == taints.NoExecute {
			out = append(out, t)
		}
	}
	return out
}

func (c *Controller) podChanged(p *corev1.Pod) {
	if p.GetSpec().GetNodeName() == "" || p.GetMetadata().GetDeletionTimestamp() != "" {
		return
	}
	node, ok := c.nodeInf.Store().Get("", p.GetSpec().GetNodeName())
	if ok && len(noExecute(node.(*corev1.Node))) > 0 {
		c.evict.Add(informer.KeyOf(p))
	}
}

// syncPod evicts one pod if its node's NoExecute taints say so now, or looks again when
// they will.
func (c *Controller) syncPod(ctx context.Context, key string) error {
	obj, ok := c.podInf.Store().GetByKey(key)
	if !ok {
		return nil
	}
	p := obj.(*corev1.Pod)
	if p.GetSpec().GetNodeName() == "" || p.GetMetadata().GetDeletionTimestamp() != "" || controller.IsPodTerminal(p) {
		return nil
	}
	nobj, ok := c.nodeInf.Store().Get("", p.GetSpec().GetNodeName())
	if !ok {
		return nil
	}
	taintsNow := noExecute(nobj.(*corev1.Node))
	if len(taintsNow) == 0 {
		return nil
	}
	delay := taints.EvictionDelay(p.GetSpec().GetTolerations(), taintsNow)
	if delay == taints.Forever {
		return nil
	}
	now := c.cfg.Now()
	// The clock starts when the latest of the taints was added.
	var since time.Time
	for _, t := range taintsNow {
		if at, err := controller.ParseTime(t.GetTimeAdded()); err == nil && at.After(since) {
			since = at
		}
	}
	if since.IsZero() {
		since = now
	}
	if wait := since.Add(delay).Sub(now); wait > 0 {
		c.evict.AddAfter(key, wait)
		return nil
	}
	md := p.GetMetadata()
	_, err := c.cfg.Client.Delete(ctx, c.podKind, md.GetNamespace(), md.GetName(), client.DeleteOptions{UID: md.GetUid()})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("evict pod %s: %w", key, err)
	}
	c.log.Info("evicted pod from tainted node", "pod", key, "node", p.GetSpec().GetNodeName())
	if c.cfg.Recorder != nil {
		ev := proto.Clone(p).(*corev1.Pod)
		scheme.SetTypeMeta(ev, c.podKind.APIVersion(), c.podKind.Kind)
		c.cfg.Recorder.Eventf(ev, record.Normal, "TaintManagerEviction", "Marking for deletion Pod %s", key)
	}
	return nil
}

func (c *Controller) event(n *corev1.Node, typ, reason, format string, args ...any) {
	if c.cfg.Recorder == nil {
		return
	}
	obj := proto.Clone(n).(*corev1.Node)
	scheme.SetTypeMeta(obj, c.nodeKind.APIVersion(), c.nodeKind.Kind)
	c.cfg.Recorder.Eventf(obj, typ, reason, format, args...)
}
