// Package kubeletsim is a simulated kubelet for tests, benchmarks and demos where no real node
// runs: for each of its nodes it follows the pods bound there through the bus (the node-scoped
// informer a real kubelet uses), reports them Running and Ready with a pod IP, confirms their
// graceful deletion (a delete with grace 0 once deletionTimestamp is set), and optionally
// heartbeats the node's Lease in kube-node-lease and keeps its Ready condition True. A node can
// be stopped (it goes silent: no heartbeats, no status, no confirmations) and started again, and
// a pod's readiness can be forced, so tests can drive node loss and readiness changes.
package kubeletsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/leaderelection"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// NodeLeaseNamespace holds the nodes' heartbeat Leases, as in Kubernetes.
const NodeLeaseNamespace = "kube-node-lease"

// Config configures a Kubelet.
type Config struct {
	Client    client.Interface
	JetStream jetstream.JetStream
	// Nodes are the nodes this kubelet runs (their Node objects are made by CreateNodes or
	// by the test).
	Nodes []string
	// HeartbeatInterval renews each running node's Lease and keeps its Ready condition True;
	// 0 sends no heartbeats.
	HeartbeatInterval time.Duration
	// LeaseDurationSeconds is written into the Leases (Kubernetes' kubelet uses 40).
	LeaseDurationSeconds int32
	// Workers bound the status writes and confirmations in flight (default 16).
	Workers int
	Logger  *slog.Logger
}

type podItem struct{ node, key string }

// Kubelet is a running simulated kubelet for several nodes.
type Kubelet struct {
	cfg   Config
	log   *slog.Logger
	pods  *scheme.Kind
	nodes *scheme.Kind
	lease *scheme.Kind
	queue *workqueue.Queue[podItem]

	informers map[string]*informer.Informer // per node
	nodeIndex map[string]int
	// gates: work for a node (a pod sync, a heartbeat) holds its read lock, so that StopNode,
	// taking the write lock, returns only once nothing of the node is in flight.
	gates map[string]*sync.RWMutex

	mu      sync.Mutex
	stopped map[string]bool   // nodes gone silent
	ready   map[string]bool   // forced readiness by pod key
	ips     map[string]string // pod key -> IP, stable across updates
	nextIP  map[string]int    // per node
	leases  map[string]*coordinationv1.Lease
	wake    chan struct{} // heartbeat now (a node was started)
}

// New returns a kubelet for cfg; call Run.
func New(cfg Config) *Kubelet {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.LeaseDurationSeconds <= 0 {
		cfg.LeaseDurationSeconds = 40
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := cfg.Client.Scheme()
	k := &Kubelet{cfg: cfg, log: log.With("component", "kubeletsim"), informers: map[string]*informer.Informer{},
		nodeIndex: map[string]int{}, stopped: map[string]bool{}, ready: map[string]bool{}, ips: map[string]string{},
		nextIP: map[string]int{}, leases: map[string]*coordinationv1.Lease{}, wake: make(chan struct{}, 1)}
	k.pods, _ = s.ForName("pods")
	k.nodes, _ = s.ForName("nodes")
	k.lease, _ = s.ForName("leases")
	k.gates = map[string]*sync.RWMutex{}
	for i, n := range cfg.Nodes {
		k.nodeIndex[n] = i
		k.gates[n] = &sync.RWMutex{}
	}
	return k
}

// Run serves the nodes until ctx ends.
func (k *Kubelet) Run(ctx context.Context) error {
	k.queue = workqueue.New[podItem](workqueue.WithName("kubeletsim"))
	factory := informer.NewFactory(k.cfg.Client, k.cfg.JetStream, k.log)
	for _, node := range k.cfg.Nodes {
		inf := factory.ForNode(k.pods, node)
		k.informers[node] = inf
		enqueue := func(obj scheme.Object) { k.queue.Add(podItem{node: node, key: informer.KeyOf(obj)}) }
		inf.AddEventHandler(informer.HandlerFuncs{
			AddFunc:    enqueue,
			UpdateFunc: func(_, obj scheme.Object) { enqueue(obj) },
			DeleteFunc: func(obj scheme.Object) { k.forget(informer.KeyOf(obj)) },
		})
	}
	factory.Start(ctx)
	defer factory.Shutdown()
	var wg sync.WaitGroup
	if k.cfg.HeartbeatInterval > 0 {
		wg.Go(func() { k.heartbeats(ctx) })
	}
	workqueue.Run(ctx, k.queue, k.cfg.Workers, k.syncPod)
	wg.Wait()
	return nil
}

// WaitForSync waits until the kubelet follows all its nodes' pods.
func (k *Kubelet) WaitForSync(ctx context.Context) bool {
	for {
		if k.queue != nil {
			break
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
	infs := make([]*informer.Informer, 0, len(k.informers))
	for _, inf := range k.informers {
		infs = append(infs, inf)
	}
	return informer.WaitForCacheSync(ctx, infs...)
}

// StopNode makes node go silent, as a crashed machine: no heartbeats, no status updates, no
// deletion confirmations. It returns once no work of the node is in flight.
func (k *Kubelet) StopNode(node string) {
	g := k.gates[node]
	g.Lock()
	defer g.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped[node] = true
}

// enter starts a piece of work for node; it reports false (and holds nothing) when the node is
// stopped. leave ends it.
func (k *Kubelet) enter(node string) bool {
	g := k.gates[node]
	g.RLock()
	if !k.running(node) {
		g.RUnlock()
		return false
	}
	return true
}

func (k *Kubelet) leave(node string) { k.gates[node].RUnlock() }

// StartNode brings a stopped node back: it heartbeats at once and catches up on its pods.
func (k *Kubelet) StartNode(node string) {
	k.mu.Lock()
	delete(k.stopped, node)
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
	if inf := k.informers[node]; inf != nil {
		for _, obj := range inf.Store().List() {
			k.queue.Add(podItem{node: node, key: informer.KeyOf(obj)})
		}
	}
}

// SetPodReady forces the readiness the kubelet reports for the pod namespace/name (as a
// failing or recovering readiness probe would).
func (k *Kubelet) SetPodReady(namespace, name string, ready bool) {
	key := namespace + "/" + name
	k.mu.Lock()
	k.ready[key] = ready
	k.mu.Unlock()
	for node, inf := range k.informers {
		if _, ok := inf.Store().GetByKey(key); ok {
			k.queue.Add(podItem{node: node, key: key})
		}
	}
}

func (k *Kubelet) running(node string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return !k.stopped[node]
}

func (k *Kubelet) forget(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.ips, key)
	delete(k.ready, key)
}

// syncPod brings one pod's reported state to what a healthy node would report.
func (k *Kubelet) syncPod(ctx context.Context, it podItem) error {
	if !k.enter(it.node) {
		return nil // a silent node does nothing; StartNode requeues its pods
	}
	defer k.leave(it.node)
	obj, ok := k.informers[it.node].Store().GetByKey(it.key)
	if !ok {
		return nil
	}
	pod := obj.(*corev1.Pod)
	md := pod.GetMetadata()
	if md.GetDeletionTimestamp() != "" {
		// The containers are "stopped" at once: confirm, so the object goes.
		zero := int64(0)
		_, err := k.cfg.Client.Delete(ctx, k.pods, md.GetNamespace(), md.GetName(),
			client.DeleteOptions{GracePeriodSeconds: &zero, UID: md.GetUid()})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("confirm deletion of %s: %w", it.key, err)
		}
		return nil
	}
	if controller.IsPodTerminal(pod) {
		return nil
	}
	want := k.desiredStatus(it.node, pod)
	if statusEqual(pod.GetStatus(), want) {
		return nil
	}
	next := proto.Clone(pod).(*corev1.Pod)
	next.Status = want
	_, err := k.cfg.Client.UpdateStatus(ctx, next)
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return nil // a newer version is on its way through the informer, which requeues
	}
	return fmt.Errorf("report status of %s: %w", it.key, err)
}

// desiredStatus is the status of a running pod: Running, an IP, every container running, and
// Ready as forced by SetPodReady (true by default).
func (k *Kubelet) desiredStatus(node string, pod *corev1.Pod) *corev1.PodStatus {
	key := informer.KeyOf(pod)
	k.mu.Lock()
	ready, forced := k.ready[key]
	if !forced {
		ready = true
	}
	ip, ok := k.ips[key]
	if !ok {
		if cur := pod.GetStatus().GetPodIp(); cur != "" {
			ip = cur
		} else {
			ip = k.allocateIP(node)
		}
		k.ips[key] = ip
	}
	k.mu.Unlock()

	cur := pod.GetStatus()
	now := controller.Timestamp(time.Now())
	st := proto.Clone(cur).(*corev1.PodStatus)
	if st == nil {
		st = &corev1.PodStatus{}
	}
	st.Phase = controller.PodRunning
	st.PodIp, st.PodIps = ip, []*corev1.PodIP{{Ip: ip}}
	st.HostIp = k.hostIP(node)
	if st.StartTime == "" {
		st.StartTime = now
	}
	readyStatus := controller.ConditionFalse
	if ready {
		readyStatus = controller.ConditionTrue
	}
	for _, c := range []struct{ typ, status string }{{"PodScheduled", controller.ConditionTrue},
		{"Initialized", controller.ConditionTrue}, {"ContainersReady", readyStatus}, {controller.PodReady, readyStatus}} {
		setCondition(st, c.typ, c.status, now)
	}
	st.ContainerStatuses = st.ContainerStatuses[:0]
	for _, c := range pod.GetSpec().GetContainers() {
		started := true
		st.ContainerStatuses = append(st.ContainerStatuses, &corev1.ContainerStatus{Name: c.GetName(), Image: c.GetImage(),
			Ready: ready, Started: &started, ImageId: "sim://" + c.GetImage(), ContainerId: "sim://" + key + "/" + c.GetName(),
			State: &corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt(cur, c.GetName(), st.StartTime)}}})
	}
	return st
}

func startedAt(cur *corev1.PodStatus, name, def string) string {
	for _, cs := range cur.GetContainerStatuses() {
		if cs.GetName() == name && cs.GetState().GetRunning().GetStartedAt() != "" {
			return cs.GetState().GetRunning().GetStartedAt()
		}
	}
	return def
}

// setCondition sets a condition, keeping its transition time when its status is unchanged.
func setCondition(st *corev1.PodStatus, typ, status, now string) {
	for _, c := range st.Conditions {
		if c.GetType() == typ {
			if c.GetStatus() != status {
				c.Status, c.LastTransitionTime = status, now
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, &corev1.PodCondition{Type: typ, Status: status, LastTransitionTime: now})
}

// statusEqual compares what the kubelet reports, ignoring timestamps it would not change.
func statusEqual(cur, want *corev1.PodStatus) bool {
	return proto.Equal(cur, want)
}

// allocateIP hands out 10.X.Y.Z addresses, one /24 per node (k.mu held).
func (k *Kubelet) allocateIP(node string) string {
	i := k.nodeIndex[node]
	n := k.nextIP[node]
	k.nextIP[node] = n + 1
	return fmt.Sprintf("10.%d.%d.%d", 64+i/256, i%256, 2+n%250)
}

func (k *Kubelet) hostIP(node string) string {
	i := k.nodeIndex[node]
	return fmt.Sprintf("192.168.%d.%d", i/250, 1+i%250)
}

// heartbeats renews the running nodes' Leases and keeps their Ready condition True.
func (k *Kubelet) heartbeats(ctx context.Context) {
	t := time.NewTicker(k.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		for _, node := range k.cfg.Nodes {
			if ctx.Err() != nil {
				return
			}
			if !k.enter(node) {
				continue
			}
			if err := k.heartbeat(ctx, node); err != nil && ctx.Err() == nil {
				k.log.Warn("heartbeat failed", "node", node, "error", err)
			}
			k.leave(node)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.wake:
		}
	}
}

func (k *Kubelet) heartbeat(ctx context.Context, node string) error {
	if err := k.renewLease(ctx, node); err != nil {
		return err
	}
	return k.postReady(ctx, node)
}

func (k *Kubelet) renewLease(ctx context.Context, node string) error {
	now := time.Now().UTC().Format(leaderelection.MicroTimeFormat)
	k.mu.Lock()
	l := k.leases[node]
	k.mu.Unlock()
	for range 3 {
		if l == nil {
			obj, err := k.cfg.Client.Get(ctx, k.lease, NodeLeaseNamespace, node)
			switch {
			case apierrors.IsNotFound(err):
				created, err := k.cfg.Client.Create(ctx, &coordinationv1.Lease{
					Metadata: &metav1.ObjectMeta{Name: node, Namespace: NodeLeaseNamespace},
					Spec: &coordinationv1.LeaseSpec{HolderIdentity: node, LeaseDurationSeconds: proto.Int32(k.cfg.LeaseDurationSeconds),
						RenewTime: now}})
				if err == nil {
					k.setLease(node, created.(*coordinationv1.Lease))
					return nil
				}
				if !apierrors.IsAlreadyExists(err) {
					return fmt.Errorf("create lease: %w", err)
				}
				continue
			case err != nil:
				return fmt.Errorf("get lease: %w", err)
			}
			l = obj.(*coordinationv1.Lease)
		}
		next := proto.Clone(l).(*coordinationv1.Lease)
		if next.Spec == nil {
			next.Spec = &coordinationv1.LeaseSpec{}
		}
		next.Spec.HolderIdentity, next.Spec.RenewTime = node, now
		next.Spec.LeaseDurationSeconds = proto.Int32(k.cfg.LeaseDurationSeconds)
		updated, err := k.cfg.Client.Update(ctx, next)
		if err == nil {
			k.setLease(node, updated.(*coordinationv1.Lease))
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("renew lease: %w", err)
		}
		l = nil
	}
	return errors.New("renew lease: too many conflicts")
}

func (k *Kubelet) setLease(node string, l *coordinationv1.Lease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.leases[node] = l
}

// postReady sets the node's Ready condition True when it is not (a new node, or one the node
// lifecycle controller marked Unknown while it was silent).
func (k *Kubelet) postReady(ctx context.Context, node string) error {
	obj, err := k.cfg.Client.Get(ctx, k.nodes, "", node)
	if err != nil {
		return fmt.Errorf("get node: %w", err)
	}
	n := obj.(*corev1.Node)
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" && c.GetStatus() == controller.ConditionTrue {
			return nil
		}
	}
	setNodeReady(n, time.Now())
	if _, err := k.cfg.Client.UpdateStatus(ctx, n); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("post node status: %w", err)
	}
	return nil
}

func setNodeReady(n *corev1.Node, now time.Time) {
	if n.Status == nil {
		n.Status = &corev1.NodeStatus{}
	}
	ts := controller.Timestamp(now)
	for _, c := range n.Status.Conditions {
		if c.GetType() == "Ready" {
			if c.GetStatus() != controller.ConditionTrue {
				c.LastTransitionTime = ts
			}
			c.Status, c.Reason, c.Message, c.LastHeartbeatTime = controller.ConditionTrue, "KubeletReady", "kubelet is posting ready status", ts
			return
		}
	}
	n.Status.Conditions = append(n.Status.Conditions, &corev1.NodeCondition{Type: "Ready", Status: controller.ConditionTrue,
		Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: ts, LastTransitionTime: ts})
}

// NodeOptions shape the Node objects CreateNodes makes.
type NodeOptions struct {
	CPU, Memory, Pods string            // allocatable; defaults 32, 128Gi, 110
	Labels            map[string]string // besides kubernetes.io/hostname
}

// CreateNodes creates Node objects that a kubelet reports Ready (status Ready=True now).
func CreateNodes(ctx context.Context, c client.Interface, names []string, o NodeOptions) error {
	if o.CPU == "" {
		o.CPU = "32"
	}
	if o.Memory == "" {
		o.Memory = "128Gi"
	}
	if o.Pods == "" {
		o.Pods = "110"
	}
	for _, name := range names {
		l := map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
		for key, v := range o.Labels {
			l[key] = v
		}
		alloc := map[string]string{"cpu": o.CPU, "memory": o.Memory, "pods": o.Pods}
		n := &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name, Labels: l}, Spec: &corev1.NodeSpec{},
			Status: &corev1.NodeStatus{Capacity: alloc, Allocatable: alloc,
				NodeInfo: &corev1.NodeSystemInfo{KubeletVersion: "kubeletsim", OperatingSystem: "linux", Architecture: "amd64"}}}
		setNodeReady(n, time.Now())
		if _, err := c.Create(ctx, n); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	return nil
}
