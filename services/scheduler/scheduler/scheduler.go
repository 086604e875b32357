// Package scheduler binds pending pods to nodes by Kubernetes' rules. It lives entirely on
// the bus: informers on pods, nodes and namespaces fill its cache; a scheduling queue orders
// pending pods; one scheduling loop filters and scores nodes for one pod at a time and
// assumes the pod onto the chosen node; binding runs asynchronously through the pods/binding
// subresource, so the loop never waits for the API.
package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/record"
)

// DefaultSchedulerName is the spec.schedulerName this scheduler serves (and pods with none).
const DefaultSchedulerName = "default-scheduler"

// Config configures a Scheduler.
type Config struct {
	Client    client.Interface
	Informers *informer.Factory
	Recorder  *record.Recorder // nil: no Events
	Logger    *slog.Logger
	Metrics   prometheus.Registerer // nil: not exported
	// SchedulerName: pods whose spec.schedulerName is this (or empty) are scheduled.
	SchedulerName string
	// PercentageOfNodesToScore: 0 is Kubernetes' adaptive default (see numFeasibleNodesToFind).
	PercentageOfNodesToScore int
	// BindWorkers bound the bindings and status writes in flight.
	BindWorkers int
	// OnSynced, if set, is called once the caches have synced (readiness).
	OnSynced func()
}

// Scheduler is a running scheduler.
type Scheduler struct {
	cfg   Config
	log   *slog.Logger
	cache *Cache
	queue *Queue
	algo  *algorithm
	pods  *informer.Informer
	nodes *informer.Informer
	ns    *informer.Informer
	m     *metrics
	work  chan func(context.Context)
}

// New prepares a scheduler and registers its informer handlers; call Run.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("scheduler: Config needs Client and Informers")
	}
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = DefaultSchedulerName
	}
	if cfg.BindWorkers <= 0 {
		cfg.BindWorkers = 32
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Scheduler{cfg: cfg, log: log.With("component", "scheduler"), cache: NewCache(), queue: NewQueue(nil),
		m: newMetrics(cfg.Metrics), work: make(chan func(context.Context), 4*cfg.BindWorkers)}
	s.algo = &algorithm{cache: s.cache, percentageOfNodesToScore: cfg.PercentageOfNodesToScore,
		rnd: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5ced))}
	sch := cfg.Client.Scheme()
	kind := func(name string) *scheme.Kind {
		k, err := sch.ForName(name)
		if err != nil {
			panic(err) // the built-in scheme always has these
		}
		return k
	}
	s.pods = cfg.Informers.For(kind("pods"))
	s.nodes = cfg.Informers.For(kind("nodes"))
	s.ns = cfg.Informers.For(kind("namespaces"))
	s.pods.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { s.podChanged(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj scheme.Object) { s.podChanged(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj scheme.Object) { s.podDeleted(obj.(*corev1.Pod)) },
	})
	s.nodes.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { s.nodeChanged(nil, obj.(*corev1.Node)) },
		UpdateFunc: func(old, obj scheme.Object) { s.nodeChanged(old.(*corev1.Node), obj.(*corev1.Node)) },
		DeleteFunc: func(obj scheme.Object) { s.cache.DeleteNode(obj.GetMetadata().GetName()) },
	})
	s.ns.AddEventHandler(informer.HandlerFuncs{
		AddFunc: func(obj scheme.Object) {
			s.cache.SetNamespace(obj.GetMetadata().GetName(), obj.GetMetadata().GetLabels())
		},
		UpdateFunc: func(_, obj scheme.Object) {
			s.cache.SetNamespace(obj.GetMetadata().GetName(), obj.GetMetadata().GetLabels())
		},
		DeleteFunc: func(obj scheme.Object) { s.cache.DeleteNamespace(obj.GetMetadata().GetName()) },
	})
	return s, nil
}

// Cache exposes the scheduler's view (for tests and benchmarks).
func (s *Scheduler) Cache() *Cache { return s.cache }

// Queue exposes the scheduling queue (for tests and benchmarks).
func (s *Scheduler) Queue() *Queue { return s.queue }

// Run schedules until ctx ends. It starts the informers it needs (the factory may be shared:
// Start only starts informers not yet running) and waits for their caches first.
func (s *Scheduler) Run(ctx context.Context) error {
	s.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, s.pods, s.nodes, s.ns) {
		return ctx.Err()
	}
	s.log.Info("scheduler started", "nodes", s.cache.NodeCount(), "pods", s.cache.PodCount())
	if s.cfg.OnSynced != nil {
		s.cfg.OnSynced()
	}
	var wg sync.WaitGroup
	wg.Add(1 + s.cfg.BindWorkers)
	go func() { defer wg.Done(); s.queue.Run(ctx) }()
	for range s.cfg.BindWorkers {
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case job := <-s.work:
					job(ctx)
				}
			}
		}()
	}
	for {
		qp := s.queue.Pop(ctx)
		if qp == nil {
			break
		}
		s.scheduleOne(ctx, qp)
	}
	wg.Wait()
	return nil
}

// responsible reports whether this scheduler should place the pod.
func (s *Scheduler) responsible(pod *corev1.Pod) bool {
	name := pod.GetSpec().GetSchedulerName()
	return (name == "" || name == s.cfg.SchedulerName) && pod.GetMetadata().GetDeletionTimestamp() == ""
}

func terminal(pod *corev1.Pod) bool {
	phase := pod.GetStatus().GetPhase()
	return phase == "Succeeded" || phase == "Failed"
}

func (s *Scheduler) podChanged(pod *corev1.Pod) {
	key := informer.KeyOf(pod)
	switch {
	case pod.GetSpec().GetNodeName() != "":
		// Bound (by us, confirming the assumption, or by someone else).
		s.queue.Delete(key)
		if terminal(pod) {
			s.podGone(key)
			return
		}
		s.cache.SetPod(pod)
	case s.responsible(pod) && !terminal(pod):
		if s.cache.IsPlaced(key) {
			return // assumed by this scheduler; its binding is in flight
		}
		s.queue.Add(NewPodInfo(pod))
	default:
		s.queue.Delete(key)
	}
}

func (s *Scheduler) podDeleted(pod *corev1.Pod) {
	key := informer.KeyOf(pod)
	s.queue.Delete(key)
	s.podGone(key)
}

// podGone frees what a placed pod held; waiting pods may fit now.
func (s *Scheduler) podGone(key string) {
	if s.cache.IsPlaced(key) {
		s.cache.DeletePod(key)
		s.queue.MoveAllToActiveOrBackoff()
	}
}

func (s *Scheduler) nodeChanged(old, node *corev1.Node) {
	s.cache.SetNode(node)
	// A new node, or one that gained room, labels or lost taints, may fit waiting pods. Status
	// heartbeats that change nothing the scheduler reads do not wake them.
	if old == nil || !proto.Equal(old.GetSpec(), node.GetSpec()) ||
		!labelsEqual(old.GetMetadata().GetLabels(), node.GetMetadata().GetLabels()) ||
		!mapsEqual(old.GetStatus().GetAllocatable(), node.GetStatus().GetAllocatable()) {
		s.queue.MoveAllToActiveOrBackoff()
	}
}

// scheduleOne runs one scheduling cycle for qp and hands the binding to a worker.
func (s *Scheduler) scheduleOne(ctx context.Context, qp *queuedPod) {
	pi := qp.info
	if cur, ok := s.pods.Store().GetByKey(pi.Key); !ok || cur.(*corev1.Pod).GetSpec().GetNodeName() != "" ||
		!s.responsible(cur.(*corev1.Pod)) {
		s.queue.Done(pi.Key) // deleted, bound or handed to another scheduler meanwhile
		return
	}
	start := time.Now()
	res, err := s.algo.schedule(pi)
	s.m.algorithm.Observe(time.Since(start).Seconds())
	if err != nil {
		s.m.attempts.WithLabelValues("unschedulable").Inc()
		s.queue.Requeue(qp, true)
		s.log.Debug("pod unschedulable", "pod", pi.Key, "reason", err.Error())
		s.submit(ctx, func(ctx context.Context) { s.recordUnschedulable(ctx, pi, err.Error()) })
		return
	}
	s.submit(ctx, func(ctx context.Context) { s.bind(ctx, qp, res.node) })
}

// submit hands a job to the workers (waiting for one when all are busy: that is the
// back-pressure that keeps bindings in flight bounded).
func (s *Scheduler) submit(ctx context.Context, job func(context.Context)) {
	select {
	case s.work <- job:
	case <-ctx.Done():
	}
}

// bindTimeout bounds one binding request.
const bindTimeout = 30 * time.Second

// bind writes the binding. A pod bound or deleted meanwhile is dropped cleanly; other
// failures undo the assumption and retry after a back-off.
func (s *Scheduler) bind(ctx context.Context, qp *queuedPod, node string) {
	pi := qp.info
	ns, name := informer.SplitKey(pi.Key)
	start := time.Now()
	// A binding is not abandoned half-way when the scheduler stops: one the apiserver made
	// but the scheduler never heard of would have no Scheduled event.
	bindCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bindTimeout)
	err := s.cfg.Client.Bind(bindCtx, ns, name, node)
	cancel()
	s.m.binding.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		s.m.attempts.WithLabelValues("scheduled").Inc()
		s.queue.Done(pi.Key)
		if s.cfg.Recorder != nil {
			s.cfg.Recorder.Eventf(pi.Pod, record.Normal, "Scheduled", "Successfully assigned %s to %s", pi.Key, node)
		}
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// Deleted, or bound by someone else, since it was queued: nothing left to do.
		s.m.attempts.WithLabelValues("dropped").Inc()
		s.cache.ForgetPod(pi.Key)
		s.queue.Done(pi.Key)
		s.log.Debug("binding dropped", "pod", pi.Key, "node", node, "error", err)
	default:
		s.m.attempts.WithLabelValues("error").Inc()
		s.cache.ForgetPod(pi.Key)
		s.queue.Requeue(qp, false)
		if ctx.Err() == nil {
			s.log.Warn("binding failed; will retry", "pod", pi.Key, "node", node, "error", err)
		}
	}
}

// recordUnschedulable sets PodScheduled=False (reason Unschedulable, Kubernetes' message)
// when it is not already so, and records a FailedScheduling event.
func (s *Scheduler) recordUnschedulable(ctx context.Context, pi *PodInfo, message string) {
	if s.cfg.Recorder != nil {
		s.cfg.Recorder.Event(pi.Pod, record.Warning, "FailedScheduling", message)
	}
	want := &corev1.PodCondition{Type: "PodScheduled", Status: "False", Reason: "Unschedulable", Message: message}
	ns, name := informer.SplitKey(pi.Key)
	k, _ := s.cfg.Client.Scheme().ForName("pods")
	for range 3 {
		obj, err := s.cfg.Client.Get(ctx, k, ns, name)
		if err != nil {
			return // gone
		}
		pod := obj.(*corev1.Pod)
		if pod.GetSpec().GetNodeName() != "" || hasCondition(pod, want) {
			return
		}
		setCondition(pod, want, time.Now())
		_, err = s.cfg.Client.UpdateStatus(ctx, pod)
		if err == nil || !apierrors.IsConflict(err) {
			if err != nil && ctx.Err() == nil {
				s.log.Warn("could not record unschedulable status", "pod", pi.Key, "error", err)
			}
			return
		}
	}
}

func hasCondition(pod *corev1.Pod, want *corev1.PodCondition) bool {
	for _, c := range pod.GetStatus().GetConditions() {
		if c.GetType() == want.GetType() {
			return c.GetStatus() == want.GetStatus() && c.GetReason() == want.GetReason() && c.GetMessage() == want.GetMessage()
		}
	}
	return false
}

func setCondition(pod *corev1.Pod, c *corev1.PodCondition, now time.Time) {
	if pod.Status == nil {
		pod.Status = &corev1.PodStatus{}
	}
	ts := now.UTC().Format(time.RFC3339)
	c.LastProbeTime, c.LastTransitionTime = ts, ts
	for i, old := range pod.Status.Conditions {
		if old.GetType() == c.GetType() {
			if old.GetStatus() == c.GetStatus() {
				c.LastTransitionTime = old.GetLastTransitionTime()
			}
			pod.Status.Conditions[i] = c
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}

func mapsEqual(a, b map[string]string) bool { return labelsEqual(a, b) }

// metrics are the scheduler's Prometheus series.
type metrics struct {
	attempts  *prometheus.CounterVec
	algorithm prometheus.Histogram
	binding   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := prometheus.ExponentialBuckets(0.0001, 2, 16)
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_scheduler_schedule_attempts_total",
			Help: "Scheduling attempts by result: scheduled, unschedulable, error, dropped."}, []string{"result"}),
		algorithm: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_scheduler_algorithm_duration_seconds",
			Help: "Time to filter and score nodes for one pod.", Buckets: buckets}),
		binding: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_scheduler_binding_duration_seconds",
			Help: "Time of one binding request.", Buckets: buckets}),
	}
	if reg != nil {
		reg.MustRegister(m.attempts, m.algorithm, m.binding)
	}
	return m
}
