package manager_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/internal/testenv/cluster"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/apiserver/storage"
	"github.com/skiff-project/skiff/services/endpoints/endpoints"
	"github.com/skiff-project/skiff/services/rs-controller/manager"
	"github.com/skiff-project/skiff/services/scheduler/scheduler"
)

// BenchmarkControllers is the controllers' end-to-end benchmark: a Deployment of 1,000
// replicas on 100 Node objects, through the real apiserver (etcd with fsync) and bus, with the
// scheduler, every controller of rs-controller and the endpoints controller sharing one
// informer factory (as in skiff up) and the simulated kubelet as its own process. It prints the
// time from the Deployment's creation to 1,000 pods bound and to 1,000 ready, a rolling update
// of all of them (maxSurge 25%, maxUnavailable 25%, bounds checked from the event stream), and
// the latency from a pod's readiness change being written to the Endpoints of the 1,000-pod
// Service being written (both observed on one etcd watch), with one goal line each.
//
// SKIFF_BENCH_REPLICAS changes the size; SKIFF_BENCH_PROFILE=DIR writes a CPU profile of
// each phase there.
//
//	make bench-controllers
func BenchmarkControllers(b *testing.B) {
	replicas, nodes, flips := 1000, 100, 200
	if s := os.Getenv("SKIFF_BENCH_REPLICAS"); s != "" {
		fmt.Sscan(s, &replicas)
	}
	for range b.N {
		r := runControllersBenchmark(b, replicas, nodes, flips)
		var out strings.Builder
		fmt.Fprintf(&out, "\nControllers, end to end: a Deployment of %d replicas on %d Node objects (apiserver + etcd fsync + bus, scheduler, simulated kubelet), %d cores\n",
			replicas, nodes, runtime.NumCPU())
		fmt.Fprintf(&out, "  create -> %d pods bound:   %6.2f s\n", replicas, r.bound.Seconds())
		fmt.Fprintf(&out, "  create -> %d pods ready:   %6.2f s\n", replicas, r.ready.Seconds())
		fmt.Fprintf(&out, "  rolling update (image change, maxSurge 25%%, maxUnavailable 25%%): %.2f s; at any moment at most %d active pods (bound %d), at least %d ready (bound %d)\n",
			r.rolling.Seconds(), r.maxPods, replicas+replicas/4, r.minReady, replicas-replicas/4)
		fmt.Fprintf(&out, "  readiness change written -> Endpoints of the %d-pod Service written (%d changes): p50 %s, p99 %s, max %s\n",
			replicas, len(r.endpoints), pct(r.endpoints, 0.5), pct(r.endpoints, 0.99), pct(r.endpoints, 1))
		fmt.Fprintf(&out, "  controller reconciles: %s\n", r.syncs)
		goal := func(what string, got, limit time.Duration) {
			verdict := "met"
			if got >= limit {
				verdict = "NOT met"
			}
			fmt.Fprintf(&out, "goal: %s under %s: %s %s\n", what, limit, got.Round(time.Millisecond), verdict)
		}
		goal(fmt.Sprintf("%d replicas bound", replicas), r.bound, 5*time.Second)
		goal(fmt.Sprintf("%d replicas ready", replicas), r.ready, 10*time.Second)
		goal(fmt.Sprintf("rolling update of %d replicas", replicas), r.rolling, 30*time.Second)
		goal("readiness -> Endpoints p99", pct(r.endpoints, 0.99), 50*time.Millisecond)
		if r.maxPods > replicas+replicas/4 || r.minReady < replicas-replicas/4 {
			fmt.Fprintf(&out, "rolling update bounds BROKEN\n")
			b.Errorf("rolling update broke its bounds: max %d pods, min %d ready", r.maxPods, r.minReady)
		}
		fmt.Print(out.String())
		b.ReportMetric(r.ready.Seconds(), "s-to-ready")
	}
}

type benchResult struct {
	bound, ready, rolling time.Duration
	maxPods, minReady     int
	endpoints             []time.Duration
	syncs                 string
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)].Round(10 * time.Microsecond)
}

func runControllersBenchmark(b *testing.B, replicas, nodes, flips int) benchResult {
	c := cluster.Start(b, cluster.Options{Nodes: nodes, Fsync: true, NoScheduler: true, Heartbeat: 10 * time.Second})
	ctx := context.Background()
	const ns = "bench"
	if _, err := c.Client.Create(ctx, &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: ns}}); err != nil {
		b.Fatal(err)
	}

	// The benchmark's view: every pod change, in order, with the bounds checked at each. The
	// counts are kept incrementally so that watching costs the cluster little CPU.
	var (
		mu                         sync.Mutex
		bound, ready, active, maxP int
		minReady                   = replicas
		armed                      bool
		boundAt, readyAt, start    time.Time
		seen                       = map[string][3]bool{} // key -> active, bound, ready
		pods                       = cluster.Kind("pods")
		deployments                = cluster.Kind("deployments")
		allBound, allReady         = make(chan struct{}), make(chan struct{})
	)
	b2i := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	c.Recorder(pods, func(_ *informer.Store, typ string, obj scheme.Object) {
		if obj.GetMetadata().GetNamespace() != ns {
			return
		}
		p := obj.(*corev1.Pod)
		key := informer.KeyOf(p)
		var now [3]bool
		if typ != "DELETED" && controller.IsPodActive(p) {
			now = [3]bool{true, p.GetSpec().GetNodeName() != "", controller.IsPodReady(p)}
		}
		mu.Lock()
		defer mu.Unlock()
		was := seen[key]
		seen[key] = now
		active += b2i(now[0]) - b2i(was[0])
		bound += b2i(now[1]) - b2i(was[1])
		ready += b2i(now[2]) - b2i(was[2])
		maxP = max(maxP, active)
		if bound >= replicas && boundAt.IsZero() {
			boundAt = time.Now()
			close(allBound)
		}
		if ready >= replicas && readyAt.IsZero() {
			readyAt = time.Now()
			close(allReady)
		}
		if armed {
			minReady = min(minReady, ready)
		}
	})

	// Scheduler, controllers and endpoints on one shared factory, as in skiff up.
	reg := prometheus.NewRegistry()
	env := &component.Env{Log: c.Log, Client: c.Client, JetStream: c.Env.JetStream(b), Metrics: reg, Identity: "bench"}
	env.Informers = informer.NewFactory(c.Client, env.JetStream, c.Log)
	sched, err := scheduler.New(scheduler.Config{Client: c.Client, Informers: env.Informers, Logger: c.Log, Metrics: reg})
	if err != nil {
		b.Fatal(err)
	}
	ec, err := endpoints.New(endpoints.Config{Client: c.Client, Informers: env.Informers, Logger: c.Log, Metrics: reg})
	if err != nil {
		b.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = sched.Run(cctx) })
	wg.Go(func() { _ = ec.Run(cctx) })
	wg.Go(func() { _ = manager.Run(cctx, env, manager.DefaultOptions()) })
	defer func() { cancel(); wg.Wait(); env.Informers.Shutdown() }()
	if !env.Informers.WaitForCacheSync(cctx) {
		b.Fatal("caches did not sync")
	}
	time.Sleep(200 * time.Millisecond)

	lbls := map[string]string{"app": "web"}
	svc := &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: &corev1.ServiceSpec{Selector: lbls, Ports: []*corev1.ServicePort{{Name: "http", Port: 80,
			TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "http"}}}}}}
	if _, err := c.Client.Create(ctx, svc); err != nil {
		b.Fatal(err)
	}
	d := &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(int32(replicas)), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1",
					Ports:     []*corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					Resources: &corev1.ResourceRequirements{Requests: map[string]string{"cpu": "100m", "memory": "64Mi"}}}}}}}}
	stopProfile := profile(b, "create")
	mu.Lock()
	start = time.Now()
	mu.Unlock()
	if _, err := c.Client.Create(ctx, d); err != nil {
		b.Fatal(err)
	}
	wait := func(ch chan struct{}, what string) {
		select {
		case <-ch:
		case <-time.After(3 * time.Minute):
			mu.Lock()
			defer mu.Unlock()
			b.Fatalf("%s: after 3 minutes %d active, %d bound, %d ready", what, active, bound, ready)
		}
	}
	wait(allBound, "all bound")
	wait(allReady, "all ready")
	stopProfile()
	var res benchResult
	mu.Lock()
	res.bound, res.ready = boundAt.Sub(start), readyAt.Sub(start)
	mu.Unlock()
	waitDeployment(b, c, ns, func(d *appsv1.Deployment) bool { return rolledOut(d, replicas) })

	// Rolling update.
	mu.Lock()
	armed, maxP, minReady = true, active, replicas
	mu.Unlock()
	stopProfile = profile(b, "rolling")
	rollStart := time.Now()
	for {
		obj, err := c.Client.Get(ctx, deployments, ns, "web")
		if err != nil {
			b.Fatal(err)
		}
		dep := obj.(*appsv1.Deployment)
		dep.Spec.Template.Spec.Containers[0].Image = "web:2"
		if _, err = c.Client.Update(ctx, dep); err == nil {
			break
		}
	}
	waitDeployment(b, c, ns, func(d *appsv1.Deployment) bool {
		return d.GetMetadata().GetAnnotations()["deployment.kubernetes.io/revision"] == "2" && rolledOut(d, replicas)
	})
	res.rolling = time.Since(rollStart)
	stopProfile()
	mu.Lock()
	res.maxPods, res.minReady, armed = maxP, minReady, false
	mu.Unlock()

	stopProfile = profile(b, "endpoints")
	res.endpoints = endpointsLatency(b, c, ns, flips)
	stopProfile()
	res.syncs = syncCounts(reg)
	return res
}

// profile writes a CPU profile of one phase to $SKIFF_BENCH_PROFILE/controllers-PHASE.prof
// when that directory is set.
func profile(b *testing.B, phase string) (stop func()) {
	dir := os.Getenv("SKIFF_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, "controllers-"+phase+".prof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

func rolledOut(d *appsv1.Deployment, replicas int) bool {
	st := d.GetStatus()
	return st.GetObservedGeneration() >= d.GetMetadata().GetGeneration() && st.GetUpdatedReplicas() == int32(replicas) &&
		st.GetReplicas() == int32(replicas) && st.GetAvailableReplicas() == int32(replicas)
}

func waitDeployment(b *testing.B, c *cluster.Cluster, ns string, cond func(*appsv1.Deployment) bool) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		obj, err := c.Client.Get(context.Background(), cluster.Kind("deployments"), ns, "web")
		if err != nil {
			b.Fatal(err)
		}
		if cond(obj.(*appsv1.Deployment)) {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("deployment not there after 3 minutes: %v", obj.(*appsv1.Deployment).GetStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// endpointsLatency flips the readiness of pods one at a time (through the simulated kubelet)
// and measures, on one etcd watch, from the pod's status write to the Endpoints write that
// reflects it.
func endpointsLatency(b *testing.B, c *cluster.Cluster, ns string, flips int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type change struct {
		at    time.Time
		pod   string
		ready bool // the pod's Ready, or (for endpoints) whether pod is in addresses
		isEP  bool
		epSet map[string]bool // endpoints: pod name -> ready
	}
	events := make(chan change, 4096)
	podPrefix := "/registry/pods/" + ns + "/"
	epKey := "/registry/endpoints/" + ns + "/web"
	// One watch (so pod and Endpoints changes arrive in commit order) over the key range from
	// the Endpoints to the namespace's pods, not the whole registry, so that the benchmark's own
	// reading stays small; each change is stamped when it arrives.
	w := c.Env.Etcd.Watch(ctx, epKey, clientv3.WithRange(podPrefix+"\xff"))
	go func() {
		for {
			var resp clientv3.WatchResponse
			select {
			case resp = <-w:
			case <-ctx.Done():
				return
			}
			if resp.Canceled {
				return
			}
			now := time.Now()
			for _, ev := range resp.Events {
				key := string(ev.Kv.Key)
				switch {
				case ev.Type == clientv3.EventTypePut && strings.HasPrefix(key, podPrefix):
					var p corev1.Pod
					if storage.Decode(ev.Kv.Value, ev.Kv.ModRevision, &p) == nil {
						events <- change{at: now, pod: p.GetMetadata().GetName(), ready: controller.IsPodReady(&p)}
					}
				case ev.Type == clientv3.EventTypePut && key == epKey:
					var ep corev1.Endpoints
					if storage.Decode(ev.Kv.Value, ev.Kv.ModRevision, &ep) == nil {
						set := map[string]bool{}
						for _, ss := range ep.GetSubsets() {
							for _, a := range ss.GetAddresses() {
								set[a.GetTargetRef().GetName()] = true
							}
							for _, a := range ss.GetNotReadyAddresses() {
								set[a.GetTargetRef().GetName()] = false
							}
						}
						events <- change{at: now, isEP: true, epSet: set}
					}
				}
			}
		}
	}()
	var names []string
	for _, obj := range c.List(cluster.Kind("pods"), ns) {
		if controller.IsPodActive(obj.(*corev1.Pod)) {
			names = append(names, obj.GetMetadata().GetName())
		}
	}
	sort.Strings(names)
	var out []time.Duration
	var missed atomic.Int64
	for i := range flips {
		name := names[(i/2)%len(names)]
		want := i%2 == 1 // not ready first, then ready again
		c.Kubelet.SetPodReady(ns, name, want)
		var written time.Time
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case ch := <-events:
				switch {
				case !ch.isEP && ch.pod == name && ch.ready == want && written.IsZero():
					written = ch.at
				case ch.isEP && !written.IsZero():
					if r, ok := ch.epSet[name]; ok && r == want {
						out = append(out, ch.at.Sub(written))
						break wait
					}
				}
			case <-deadline:
				missed.Add(1)
				obj, err := c.Client.Get(context.Background(), cluster.Kind("pods"), ns, name)
				state := fmt.Sprint(err)
				if err == nil {
					state = fmt.Sprintf("ready=%v rv=%s", controller.IsPodReady(obj.(*corev1.Pod)), obj.GetMetadata().GetResourceVersion())
				}
				b.Logf("pod %s set ready=%v: pod write seen %v; now %s", name, want, !written.IsZero(), state)
				break wait
			}
		}
	}
	if n := missed.Load(); n > 0 {
		b.Errorf("%d readiness changes never reached the Endpoints within 10 s", n)
	}
	return out
}

// syncCounts summarises skiff_controller_syncs_total by controller.
func syncCounts(reg *prometheus.Registry) string {
	mfs, _ := reg.Gather()
	per := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "skiff_controller_syncs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var name string
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" {
					name = l.GetValue()
				}
			}
			per[name] += m.GetCounter().GetValue()
		}
	}
	var parts []string
	for k, v := range per {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
