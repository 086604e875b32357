package scheduler_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/scheduler/scheduler"
)

// perfCase is one workload of the scheduling benchmark, in the spirit of Kubernetes'
// scheduler_perf: pods of one shape scheduled onto Node objects through the real apiserver
// (gRPC, etcd with fsync) and the bus.
type perfCase struct {
	name string
	pod  func(i int) *corev1.Pod
	// pods to schedule per number of nodes
	pods func(nodes int) int
	// goal is the pods/s target at 5,000 nodes (0: none)
	goal float64
}

var perfCases = []perfCase{
	{name: "basic", pod: func(i int) *corev1.Pod {
		return newPod(fmt.Sprintf("basic-%d", i), "100m", map[string]string{"app": "basic"})
	},
		pods: func(int) int { return 2000 }, goal: 1000},
	{name: "node-affinity", pod: func(i int) *corev1.Pod {
		p := newPod(fmt.Sprintf("aff-%d", i), "100m", map[string]string{"app": "aff"})
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchExpressions: []*corev1.NodeSelectorRequirement{
				{Key: "topology.kubernetes.io/zone", Operator: "In", Values: []string{"zone-1", "zone-2"}}}}}}}}
		return p
	}, pods: func(int) int { return 2000 }, goal: 500},
	{name: "pod-anti-affinity", pod: func(i int) *corev1.Pod {
		p := newPod(fmt.Sprintf("anti-%d", i), "100m", map[string]string{"color": "green"})
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []*corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"color": "green"}}, TopologyKey: "kubernetes.io/hostname"}}}}
		return p
	}, pods: func(nodes int) int { return min(nodes, 1000) }, goal: 200},
}

// BenchmarkScheduling prints pods/s per workload at 100, 1,000 and 5,000 nodes, where the
// time goes (CPU by component from a profile, binding latency, the algorithm's time per pod)
// and the scheduler cache's memory per node and per pod, then one goal line per workload.
//
//	make bench-scheduler   (go test ./services/scheduler/scheduler -run '^$' -bench Scheduling -benchtime 1x)
func BenchmarkScheduling(b *testing.B) {
	nodeCounts := []int{100, 1000, 5000}
	if s := os.Getenv("SKIFF_BENCH_NODES"); s != "" {
		nodeCounts = nil
		for _, f := range strings.Split(s, ",") {
			var n int
			fmt.Sscan(f, &n)
			nodeCounts = append(nodeCounts, n)
		}
	}
	type row struct {
		workload    string
		nodes, pods int
		seconds     float64
		rate        float64
		algoPerPod  time.Duration
		bindP50     time.Duration
		bindP99     time.Duration
		cpu         map[string]float64
		cpuTotal    float64
	}
	var rows []row
	for _, pc := range perfCases {
		for _, nodes := range nodeCounts {
			b.Run(fmt.Sprintf("%s/%dnodes", pc.name, nodes), func(b *testing.B) {
				for range b.N {
					r := runSchedulingCase(b, pc, nodes)
					rows = append(rows, row{workload: pc.name, nodes: nodes, pods: r.pods, seconds: r.elapsed.Seconds(),
						rate: float64(r.pods) / r.elapsed.Seconds(), algoPerPod: r.algoPerPod, bindP50: r.bindP50,
						bindP99: r.bindP99, cpu: r.cpu, cpuTotal: r.cpuTotal})
					b.ReportMetric(float64(r.pods)/r.elapsed.Seconds(), "pods/s")
				}
			})
		}
	}
	perNode, perPod := cacheMemory(5000, 5000)

	var out strings.Builder
	fmt.Fprintf(&out, "\nScheduling throughput, end to end (pods created -> bound, through apiserver + etcd fsync + bus), %d cores\n", runtime.NumCPU())
	fmt.Fprintf(&out, "%-18s %6s %6s %8s %9s %10s %9s %9s  %s\n", "workload", "nodes", "pods", "seconds", "pods/s",
		"algo/pod", "bind p50", "bind p99", "CPU by component (share of the measured phase's CPU)")
	for _, r := range rows {
		fmt.Fprintf(&out, "%-18s %6d %6d %8.2f %9.0f %10s %9s %9s  %s\n", r.workload, r.nodes, r.pods, r.seconds, r.rate,
			r.algoPerPod.Round(time.Microsecond), r.bindP50.Round(10*time.Microsecond), r.bindP99.Round(10*time.Microsecond),
			cpuShares(r.cpu, r.cpuTotal))
	}
	fmt.Fprintf(&out, "scheduler cache memory: %.0f bytes per node, %.0f bytes per pod (5,000 nodes, 5,000 pods)\n", perNode, perPod)
	for _, pc := range perfCases {
		for _, r := range rows {
			if r.workload != pc.name || r.nodes != 5000 || pc.goal == 0 {
				continue
			}
			verdict := "met"
			if r.rate < pc.goal {
				verdict = "NOT met"
			}
			fmt.Fprintf(&out, "goal: %s pods/s at 5,000 nodes >= %.0f: %.0f %s\n", pc.name, pc.goal, r.rate, verdict)
		}
	}
	fmt.Print(out.String())
}

type caseResult struct {
	pods             int
	elapsed          time.Duration
	algoPerPod       time.Duration
	bindP50, bindP99 time.Duration
	cpu              map[string]float64
	cpuTotal         float64
}

func runSchedulingCase(b *testing.B, pc perfCase, nodes int) caseResult {
	b.Helper()
	env := testenv.Start(b, testenv.Options{Fsync: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &cluster{env: env, quiet: quietLogger()}
	c.pods, _ = scheme.Default().ForName("pods")

	parallel(b, nodes, 32, func(i int) error {
		name := fmt.Sprintf("node-%05d", i)
		alloc := map[string]string{"cpu": "32", "memory": "128Gi", "pods": "110"}
		n := &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", i%4)}},
			Status: &corev1.NodeStatus{Capacity: alloc, Allocatable: alloc}}
		_, err := env.Client.Create(ctx, n)
		return err
	})

	reg := prometheus.NewRegistry()
	factory := informer.NewFactory(env.Client, env.JetStream(b), c.quiet)
	s, err := scheduler.New(scheduler.Config{Client: env.Client, Informers: factory, Logger: c.quiet, Metrics: reg, BindWorkers: benchBindWorkers()})
	if err != nil {
		b.Fatal(err)
	}
	// The benchmark's own view of binding: every pod seen bound through the bus.
	var bound atomic.Int64
	done := make(chan struct{})
	total := pc.pods(nodes)
	factory.For(c.pods).AddEventHandler(informer.HandlerFuncs{UpdateFunc: func(old, obj scheme.Object) {
		if old.(*corev1.Pod).GetSpec().GetNodeName() == "" && obj.(*corev1.Pod).GetSpec().GetNodeName() != "" {
			if bound.Add(1) == int64(total) {
				close(done)
			}
		}
	}})
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		pprof.Do(ctx, pprof.Labels("component", "scheduler"), func(ctx context.Context) { _ = s.Run(ctx) })
	}()
	for s.Cache().NodeCount() < nodes {
		time.Sleep(10 * time.Millisecond)
	}

	var prof bytes.Buffer
	if err := pprof.StartCPUProfile(&prof); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	parallel(b, total, 32, func(i int) error {
		_, err := env.Client.Create(ctx, pc.pod(i))
		return err
	})
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d pods bound after 5 minutes", bound.Load(), total)
	}
	elapsed := time.Since(start)
	pprof.StopCPUProfile()
	cancel()
	<-runDone
	factory.Shutdown()

	res := caseResult{pods: total, elapsed: elapsed}
	res.algoPerPod = time.Duration(histogramMean(reg, "skiff_scheduler_algorithm_duration_seconds") * float64(time.Second))
	res.bindP50 = time.Duration(histogramQuantile(reg, "skiff_scheduler_binding_duration_seconds", 0.5) * float64(time.Second))
	res.bindP99 = time.Duration(histogramQuantile(reg, "skiff_scheduler_binding_duration_seconds", 0.99) * float64(time.Second))
	res.cpu, res.cpuTotal = cpuByComponent(b, prof.Bytes())
	return res
}

// parallel runs fn(0..n-1) on workers goroutines and fails the benchmark on the first error.
func parallel(b *testing.B, n, workers int, fn func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		b.Fatal(err)
	}
}

// cpuByComponent attributes the profile's CPU samples to the component whose code is on
// the stack: the scheduler (goroutine label), etcd, NATS, the apiserver (and gRPC, the bus
// publisher), the Go runtime's GC, or other.
func cpuByComponent(b *testing.B, data []byte) (map[string]float64, float64) {
	p, err := profile.ParseData(data)
	if err != nil {
		b.Fatalf("parse profile: %v", err)
	}
	out := map[string]float64{}
	var total float64
	for _, s := range p.Sample {
		secs := float64(s.Value[len(s.Value)-1]) / 1e9
		total += secs
		out[componentOf(s)] += secs
	}
	return out, total
}

func componentOf(s *profile.Sample) string {
	if s.Label["component"] != nil {
		return "scheduler"
	}
	var funcs []string
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			funcs = append(funcs, line.Function.Name)
		}
	}
	has := func(prefix string) bool {
		for _, f := range funcs {
			if strings.HasPrefix(f, prefix) {
				return true
			}
		}
		return false
	}
	switch {
	case has("go.etcd.io/etcd/server") || has("go.etcd.io/bbolt") || has("go.etcd.io/raft"):
		return "etcd"
	case has("github.com/nats-io/nats-server"):
		return "nats"
	case has("github.com/skiff-project/skiff/services/apiserver") || has("google.golang.org/grpc"):
		return "apiserver"
	case has("github.com/skiff-project/skiff/pkg/informer") || has("github.com/skiff-project/skiff/pkg/bus") ||
		has("github.com/nats-io/nats.go"):
		return "informers"
	case has("runtime.gcBgMarkWorker") || has("runtime.gcDrain"):
		return "gc"
	}
	return "other"
}

func cpuShares(m map[string]float64, total float64) string {
	if total == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*m[k]/total))
	}
	return fmt.Sprintf("%.1fs CPU: %s", total, strings.Join(parts, ", "))
}

func histogram(reg *prometheus.Registry, name string) *dto.Histogram {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	return nil
}

func histogramMean(reg *prometheus.Registry, name string) float64 {
	h := histogram(reg, name)
	if h == nil || h.GetSampleCount() == 0 {
		return 0
	}
	return h.GetSampleSum() / float64(h.GetSampleCount())
}

// histogramQuantile estimates a quantile from the buckets (upper bound of the bucket that
// holds it).
func histogramQuantile(reg *prometheus.Registry, name string, q float64) float64 {
	h := histogram(reg, name)
	if h == nil || h.GetSampleCount() == 0 {
		return 0
	}
	want := q * float64(h.GetSampleCount())
	for _, bk := range h.GetBucket() {
		if float64(bk.GetCumulativeCount()) >= want {
			return bk.GetUpperBound()
		}
	}
	return 0
}

// cacheMemory measures the scheduler cache's heap per node and per placed pod: the heap in
// use after a GC, before and after filling a cache (the API objects it holds included, as
// the scheduler's informers share them).
func cacheMemory(nodes, pods int) (perNode, perPod float64) {
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	c := scheduler.NewCache()
	base := heap()
	for i := range nodes {
		name := fmt.Sprintf("node-%05d", i)
		alloc := map[string]string{"cpu": "32", "memory": "128Gi", "pods": "110"}
		c.SetNode(&corev1.Node{Metadata: &metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", i%4)}},
			Status: &corev1.NodeStatus{Capacity: alloc, Allocatable: alloc}})
	}
	withNodes := heap()
	for i := range pods {
		p := newPod(fmt.Sprintf("p-%05d", i), "100m", map[string]string{"app": "web", "pod-template-hash": "abc"})
		p.Spec.NodeName = fmt.Sprintf("node-%05d", i%nodes)
		c.SetPod(p)
	}
	withPods := heap()
	runtime.KeepAlive(c)
	return float64(max(withNodes-base, 0)) / float64(nodes), float64(max(withPods-withNodes, 0)) / float64(pods)
}

// benchBindWorkers lets a run try another binding concurrency (SKIFF_BENCH_BIND_WORKERS).
func benchBindWorkers() int {
	var n int
	fmt.Sscan(os.Getenv("SKIFF_BENCH_BIND_WORKERS"), &n)
	return n
}
