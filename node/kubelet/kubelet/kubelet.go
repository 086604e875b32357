// Package kubelet is Skiff's node agent. It registers its Node, heartbeats with a Lease in
// kube-node-lease, follows the pods bound to its node through the event bus (the node-scoped
// informer) and reconciles each pod's desired state against what its runtime (package
// runtime: containerd, or the hollow runtime for scale tests) actually runs: level-triggered,
// one work-queue item per pod, so a pod is never worked on by two workers at once.
//
// Sync of one pod, as Kubernetes' kubelet does it (simplified):
//   - the pod is gone, or a different pod (UID) now has its name: stop and remove whatever runs
//     for it;
//   - it is being deleted: stop its containers (SIGTERM, its grace period, SIGKILL), remove
//     them and its sandbox, then confirm the deletion (a delete with grace 0 and the pod's UID
//     as precondition) so the object goes away;
//   - otherwise: make sure its sandbox (network namespace, IP from the node's pod CIDR) is
//     ready, start each container that should run (pulling its image per imagePullPolicy),
//     restart exited ones per restartPolicy with exponential back-off (CrashLoopBackOff),
//     kill those whose liveness probe fails, and write the pod's status when it changed.
//
// A restarted kubelet finds what it runs by the runtime's labels (pod UID, container name,
// attempt) and carries on from there: no duplicate starts, and everything that belongs to
// no pod bound here is removed.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/record"
	"github.com/skiff-project/skiff/pkg/workqueue"

	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

// Version is the kubelet version reported in the Node's nodeInfo.
const Version = "v0.1.0-skiff"

// Config configures a Kubelet.
type Config struct {
	// NodeName is the Node this kubelet registers and runs pods for.
	NodeName string
	// NodeIP is the node's InternalIP (pods' hostIP; where the apiserver reaches the kubelet).
	NodeIP string
	// PodCIDR is the node's pod range; empty: wait for the control plane to set spec.podCIDR.
	PodCIDR string
	// Runtime runs the containers.
	Runtime runtime.Runtime
	// RootDir holds pods' volumes and container logs.
	RootDir string
	// ClusterDNS are the nameservers of ClusterFirst pods (the kube-dns Service's ClusterIP);
	// empty: pods get the host's resolv.conf nameservers.
	ClusterDNS []string
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// Labels are added to the Node's labels.
	Labels map[string]string
	// Taints are set on the Node at registration.
	Taints []*corev1.Taint
	// Capacity overrides what the node reports (cpu, memory, pods); default: the machine's.
	Capacity map[string]string
	// MaxPods is the pods capacity (default 110).
	MaxPods int
	// ServerAddr is where the kubelet API (logs, exec, image loads) listens; its port is
	// published in status.daemonEndpoints. Empty: no API (hollow nodes).
	ServerAddr string

	Client    client.Interface
	Informers *informer.Factory
	Recorder  *record.Recorder
	Logger    *slog.Logger
	Metrics   prometheus.Registerer

	// Workers sync that many pods at once (default twice the CPUs, at least 4: starting a
	// container is CPU-bound in runc, and a burst started all at once finishes all late;
	// terminations do not hold workers).
	Workers int
	// BackoffBase and BackoffMax bound the crash-loop and image-pull back-off (Kubernetes:
	// 10 s doubling to 5 min).
	BackoffBase, BackoffMax time.Duration
	// ResyncInterval syncs every pod this often besides events (default 10 s).
	ResyncInterval time.Duration
	// LeaseDuration (default 40 s) and HeartbeatInterval (renewal, default 10 s).
	LeaseDuration     time.Duration
	HeartbeatInterval time.Duration
	// NodeStatusInterval is how often node status is computed and written if it changed
	// (default 10 s); NodeStatusReportInterval writes it even unchanged (default 5 min).
	NodeStatusInterval       time.Duration
	NodeStatusReportInterval time.Duration
	// Image garbage collection: past HighThreshold percent of the image disk used, unused
	// images are removed, least recently used first, down to LowThreshold (85 and 80).
	ImageGCHighThresholdPercent int
	ImageGCLowThresholdPercent  int
	ImageGCInterval             time.Duration
	// PreloadImages are image tarballs (docker save, or an OCI layout with image names) imported
	// into the runtime before the node registers, so a node without a registry is Ready with
	// its images (the compose deployment's nodes load `make images` this way).
	PreloadImages []string
	// OnSynced is called once the caches are synced and the node registered.
	OnSynced func()
}

func (c *Config) defaults() error {
	if c.NodeName == "" || c.Runtime == nil || c.Client == nil || c.Informers == nil {
		return errors.New("kubelet: NodeName, Runtime, Client and Informers are required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.MaxPods == 0 {
		c.MaxPods = 110
	}
	if c.Workers == 0 {
		c.Workers = max(4, 2*goruntime.NumCPU())
	}
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDefault(&c.BackoffBase, 10*time.Second)
	setDefault(&c.BackoffMax, 300*time.Second)
	setDefault(&c.ResyncInterval, 10*time.Second)
	setDefault(&c.LeaseDuration, 40*time.Second)
	setDefault(&c.HeartbeatInterval, 10*time.Second)
	setDefault(&c.NodeStatusInterval, 10*time.Second)
	setDefault(&c.NodeStatusReportInterval, 5*time.Minute)
	setDefault(&c.ImageGCInterval, 5*time.Minute)
	if c.ImageGCHighThresholdPercent == 0 {
		c.ImageGCHighThresholdPercent = 85
	}
	if c.ImageGCLowThresholdPercent == 0 {
		c.ImageGCLowThresholdPercent = 80
	}
	if c.NodeIP == "" {
		c.NodeIP = DetectNodeIP()
	}
	if c.RootDir == "" {
		return errors.New("kubelet: RootDir is required")
	}
	return nil
}

// DetectNodeIP is the host's first non-loopback IPv4 address, or 127.0.0.1.
func DetectNodeIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// Kubelet is a running node agent.
type Kubelet struct {
	cfg      Config
	log      *slog.Logger
	rt       runtime.Runtime
	client   client.Interface
	recorder *record.Recorder

	podsKind, nodesKind, leasesKind, servicesKind *scheme.Kind

	pods     *informer.Informer
	services *informer.Informer
	queue    *workqueue.Queue[string]
	prober   *prober
	metrics  *metrics

	// podCIDR is the node's pod range once known.
	podCIDR string
	// ready is closed once the node is registered and the pod network configured.
	ready chan struct{}

	mu sync.Mutex
	// records hold what the kubelet remembers of each pod (by UID) between syncs: back-offs,
	// the last errors, when it started.
	records map[string]*podRecord
	// lastDeleted keeps the last state of pods removed from the informer, for their
	// termination grace period.
	lastDeleted map[string]*corev1.Pod
	// terminating holds the pods (by UID) whose termination runs (in bg).
	terminating map[string]*termination
	bg          sync.WaitGroup

	nodeStatusMu   sync.Mutex
	lastNodeStatus *corev1.NodeStatus
	lastNodeReport time.Time

	imageUseMu sync.Mutex
	imageUse   map[string]time.Time // image name -> last time a container used it

	serverLis net.Listener
}

// New checks cfg and prepares a Kubelet; Run starts it.
func New(cfg Config) (*Kubelet, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	sch := cfg.Client.Scheme()
	k := &Kubelet{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName), rt: cfg.Runtime, client: cfg.Client,
		recorder: cfg.Recorder, ready: make(chan struct{}), records: map[string]*podRecord{},
		lastDeleted: map[string]*corev1.Pod{}, terminating: map[string]*termination{}, imageUse: map[string]time.Time{}, podCIDR: cfg.PodCIDR}
	for name, dst := range map[string]**scheme.Kind{"pods": &k.podsKind, "nodes": &k.nodesKind, "leases": &k.leasesKind, "services": &k.servicesKind} {
		kind, err := sch.ForName(name)
		if err != nil {
			return nil, fmt.Errorf("kubelet: %w", err)
		}
		*dst = kind
	}
	if k.recorder == nil {
		k.recorder = record.New(cfg.Client, "kubelet", cfg.NodeName, k.log)
		go k.recorder.Run(context.Background()) // ends with the process; events are best effort
	}
	k.metrics = newMetrics(cfg.Metrics, cfg.NodeName)
	k.pods = cfg.Informers.ForNode(k.podsKind, cfg.NodeName)
	k.services = cfg.Informers.For(k.servicesKind)
	k.queue = workqueue.New[string](workqueue.WithName("kubelet-" + cfg.NodeName))
	k.prober = newProber(k)
	enqueue := func(obj scheme.Object) { k.queue.Add(informer.KeyOf(obj)) }
	k.pods.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { k.noteFirstSeen(obj); enqueue(obj) },
		UpdateFunc: func(_, obj scheme.Object) { enqueue(obj) },
		DeleteFunc: func(obj scheme.Object) {
			if p, ok := obj.(*corev1.Pod); ok {
				k.mu.Lock()
				k.lastDeleted[informer.KeyOf(obj)] = p
				k.mu.Unlock()
			}
			enqueue(obj)
		},
	})
	return k, nil
}

// NodeName is the node this kubelet runs.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }

// Run registers the node and runs pods until ctx ends. It returns once every goroutine it
// started has stopped; the containers keep running (a restarted kubelet adopts them).
func (k *Kubelet) Run(ctx context.Context) error {
	for _, d := range []string{"pods", "logs"} {
		if err := os.MkdirAll(filepath.Join(k.cfg.RootDir, d), 0o755); err != nil {
			return fmt.Errorf("kubelet root dir: %w", err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait() // last: after ctx is cancelled below
	defer k.bg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer k.queue.ShutDown()
	defer k.prober.stopAll()
	goRun := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}

	if err := k.preloadImages(ctx); err != nil {
		return err
	}
	if err := k.listen(); err != nil {
		return err
	}
	goRun(k.serve)
	if err := k.registerNode(ctx); err != nil {
		return err
	}
	goRun(k.heartbeatLoop)
	if err := k.waitForPodCIDR(ctx); err != nil {
		return err
	}
	close(k.ready)
	goRun(k.nodeStatusLoop)

	k.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, k.pods, k.services) {
		return ctx.Err()
	}
	k.log.Info("kubelet synced", "pods", k.pods.Store().Len(), "podCIDR", k.podCIDR)
	if k.cfg.OnSynced != nil {
		k.cfg.OnSynced()
	}
	// Everything the runtime runs is looked at once: pods that are no longer bound here
	// are torn down, the others adopted.
	k.enqueueRuntimeOrphans(ctx)
	goRun(k.runtimeEventLoop)
	goRun(k.resyncLoop)
	goRun(k.imageGCLoop)
	for range k.cfg.Workers {
		goRun(func(ctx context.Context) {
			for {
				key, shutdown := k.queue.Get(ctx)
				if shutdown {
					return
				}
				k.syncKey(ctx, key)
				k.queue.Done(key)
			}
		})
	}
	<-ctx.Done()
	return nil
}

// Ready is closed once the node is registered and its pod network known.
func (k *Kubelet) Ready() <-chan struct{} { return k.ready }

// syncKey syncs one pod, requeueing it with back-off on errors.
func (k *Kubelet) syncKey(ctx context.Context, key string) {
	start := time.Now()
	requeue, err := k.syncPod(ctx, key)
	k.metrics.syncDuration.Observe(time.Since(start).Seconds())
	switch {
	case err != nil && ctx.Err() == nil:
		k.log.Warn("pod sync failed", "pod", key, "error", err)
		k.queue.AddRateLimited(key)
	case err == nil:
		k.queue.Forget(key)
		if requeue > 0 {
			k.queue.AddAfter(key, requeue)
		}
	}
}

// runtimeEventLoop syncs a pod at once when one of its containers exits.
func (k *Kubelet) runtimeEventLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-k.rt.Events():
			if ev.Pod.Name != "" {
				k.queue.Add(ev.Pod.Namespace + "/" + ev.Pod.Name)
			}
		}
	}
}

// resyncLoop syncs every pod, and every pod the runtime has, periodically: what events
// missed is caught here (level-triggered).
func (k *Kubelet) resyncLoop(ctx context.Context) {
	t := time.NewTicker(k.cfg.ResyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, obj := range k.pods.Store().List() {
			k.queue.Add(informer.KeyOf(obj))
		}
		k.enqueueRuntimeOrphans(ctx)
	}
}

// enqueueRuntimeOrphans queues every pod the runtime runs something for that is not in the
// informer (deleted while the kubelet was down, or bound elsewhere): their sync removes it.
func (k *Kubelet) enqueueRuntimeOrphans(ctx context.Context) {
	sbs, err := k.rt.ListSandboxes(ctx)
	if err != nil {
		k.log.Warn("list sandboxes", "error", err)
		return
	}
	cs, err := k.rt.ListContainers(ctx)
	if err != nil {
		k.log.Warn("list containers", "error", err)
		return
	}
	seen := map[string]bool{}
	add := func(p runtime.PodRef) {
		key := p.Namespace + "/" + p.Name
		if p.Name == "" || seen[key] {
			return
		}
		seen[key] = true
		if obj, ok := k.pods.Store().GetByKey(key); !ok || obj.GetMetadata().GetUid() != p.UID {
			k.queue.Add(key)
		}
	}
	for _, sb := range sbs {
		add(sb.Pod)
	}
	for _, c := range cs {
		add(c.Pod)
	}
}
