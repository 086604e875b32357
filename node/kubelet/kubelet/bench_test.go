package kubelet_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"

	"github.com/skiff-project/skiff/internal/nodetest"
	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/scheduler/scheduler"

	"github.com/skiff-project/skiff/node/kubelet/cni"
	ctrd "github.com/skiff-project/skiff/node/kubelet/runtime/containerd"
)

const benchPods = 30

// BenchmarkPodStartup measures Kubernetes' pod startup latency SLI on one real node: 30 pods
// of skiff-demo:v1 (image present) created at once, as a ReplicaSet controller creates them,
// scheduled by the real scheduler, started by the kubelet (bin/kubelet, its own process) on
// containerd; latency is from each create call to the pod observed Running through the bus.
// In the same run, the baseline: raw containerd create+start of the same image (its Go
// client, no network setup), 30 at once and one by one. Then the kubelet's idle RSS and CPU
// with the 30 pods running.
func BenchmarkPodStartup(b *testing.B) {
	nodetest.RequireRoot(b)
	images := nodetest.Images(b)
	root, err := nodetest.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := nodetest.ShortTempDir(b)
	bin := filepath.Join(dir, "kubelet-bin")
	build := exec.Command("go", "build", "-o", bin, "./node/kubelet")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build kubelet: %v: %s", err, out)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := testenv.Start(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := ctrd.StartDaemon(ctx, ctrd.DaemonConfig{Dir: filepath.Join(dir, "ctrd"), Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Stop()
	node := "bench-" + filepath.Base(dir)[2:]
	defer cni.RemoveBridge(cni.BridgeNameFor(node))
	cidr := nodetest.PodCIDR(b)
	rt, err := ctrd.New(ctx, ctrd.Config{Address: d.Address, StateDir: filepath.Join(dir, "kubelet", "runtime"), Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	for _, ns := range []string{ctrd.DefaultNamespace, "bench-raw"} {
		if err := importInto(ctx, d.Address, ns, images.Demo); err != nil {
			b.Fatal(err)
		}
	}

	raw := rawContainerd(b, ctx, d.Address, filepath.Join(dir, "raw"))

	// The kubelet, as its own process.
	kubeletCmd := exec.Command(bin, "--server", env.GRPCAddr, "--nats-url", env.NATSURL, "--hostname-override", node,
		"--node-ip", "127.0.0.1", "--address", "127.0.0.1", "--port", "0", "--http-addr", "127.0.0.1:0",
		"--pod-cidr", cidr, "--root-dir", filepath.Join(dir, "kubelet"), "--container-runtime-endpoint", d.Address,
		"--containerd-dir", d.Root, "--log-level", "warn", "--pod-workers", envOr("SKIFF_BENCH_POD_WORKERS", "0"))
	kubeletCmd.Stderr = os.Stderr
	if err := kubeletCmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = kubeletCmd.Process.Signal(os.Interrupt)
		_ = kubeletCmd.Wait()
		cleanRuntime(rt, cidr)
		rt.Close()
	}()

	factory := informer.NewFactory(env.Client, env.JetStream(b), log)
	sched, err := scheduler.New(scheduler.Config{Client: env.Client, Informers: factory, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = sched.Run(ctx) }()
	podsKind, _ := env.Client.Scheme().ForName("pods")
	nodesKind, _ := env.Client.Scheme().ForName("nodes")
	observed := newObserver()
	pods := factory.For(podsKind)
	pods.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    observed.see,
		UpdateFunc: func(_, obj scheme.Object) { observed.see(obj) },
	})
	factory.Start(ctx)
	informer.WaitForCacheSync(ctx, pods)
	nodetest.Eventually(b, 60*time.Second, "the kubelet's node registered", func() error {
		_, err := env.Client.Get(ctx, nodesKind, "", node)
		return err
	})

	b.ResetTimer()
	created := make([]time.Time, benchPods)
	var wg sync.WaitGroup
	for i := range benchPods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("demo-%02d", i)
			p := &corev1.Pod{ApiVersion: "v1", Kind: "Pod",
				Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "demo"}},
				Spec:     &corev1.PodSpec{Containers: []*corev1.Container{{Name: "demo", Image: "skiff-demo:v1"}}}}
			observed.created(name, time.Now())
			created[i] = time.Now()
			if _, err := env.Client.Create(ctx, p); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	lat := observed.wait(b, benchPods, 60*time.Second)
	b.StopTimer()

	p50, p99 := pct(lat, 50), pct(lat, 99)
	rawP50, rawP99 := pct(raw.concurrent, 50), pct(raw.concurrent, 99)
	seqP50 := pct(raw.sequential, 50)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(rawP50), "raw-p50-ms")
	fmt.Printf("pod startup, %d pods at once on one node, create -> Running seen on the bus: p50 %.0f ms  p99 %.0f ms  max %.0f ms\n",
		benchPods, ms(p50), ms(p99), ms(lat[len(lat)-1]))
	fmt.Printf("raw containerd create+start of skiff-demo:v1, %d at once: p50 %.0f ms  p99 %.0f ms; one by one: p50 %.0f ms\n",
		benchPods, ms(rawP50), ms(rawP99), ms(seqP50))
	fmt.Printf("goal: p99 under 1 s (Kubernetes' SLO: 5 s): %s (p99 %.0f ms)\n", verdict(p99 < time.Second), ms(p99))
	fmt.Printf("goal: p50 under 3x raw containerd at the same concurrency: %s (%.2fx: %.0f ms vs %.0f ms; vs one-by-one raw %.2fx)\n",
		verdict(p50 < 3*rawP50), float64(p50)/float64(rawP50), ms(p50), ms(rawP50), float64(p50)/float64(seqP50))

	// Idle: 30 pods running, nothing changing.
	time.Sleep(3 * time.Second)
	cpu0, t0 := cpuTime(kubeletCmd.Process.Pid), time.Now()
	time.Sleep(10 * time.Second)
	cpu1, t1 := cpuTime(kubeletCmd.Process.Pid), time.Now()
	rss := rssKiB(kubeletCmd.Process.Pid)
	cpuPct := 100 * (cpu1 - cpu0).Seconds() / t1.Sub(t0).Seconds()
	b.ReportMetric(float64(rss)/1024, "kubelet-rss-MiB")
	fmt.Printf("idle kubelet with %d pods: RSS %.1f MiB, CPU %.2f%% of a core (over %s)\n", benchPods, float64(rss)/1024, cpuPct, t1.Sub(t0).Round(time.Second))
	fmt.Printf("goal: idle kubelet RSS under 100 MiB and CPU under 5%% of a core: %s\n", verdict(rss < 100*1024 && cpuPct < 5))

	for i := range benchPods {
		zero := int64(0)
		_, _ = env.Client.Delete(ctx, podsKind, "default", fmt.Sprintf("demo-%02d", i), clientDelete(&zero))
	}
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pct is the p-th percentile of sorted latencies (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (p*len(sorted) + 99) / 100
	return sorted[max(0, min(i, len(sorted))-1)]
}

// observer records, per pod, its create time and when the bus first showed it Running.
type observer struct {
	mu      sync.Mutex
	start   map[string]time.Time
	running map[string]time.Time
	changed chan struct{}
}

func newObserver() *observer {
	return &observer{start: map[string]time.Time{}, running: map[string]time.Time{}, changed: make(chan struct{}, 1)}
}

func (o *observer) created(name string, t time.Time) {
	o.mu.Lock()
	o.start[name] = t
	o.mu.Unlock()
}

func (o *observer) see(obj scheme.Object) {
	p := obj.(*corev1.Pod)
	if p.GetStatus().GetPhase() != "Running" {
		return
	}
	now := time.Now()
	o.mu.Lock()
	if _, ok := o.running[p.GetMetadata().GetName()]; !ok {
		o.running[p.GetMetadata().GetName()] = now
	}
	o.mu.Unlock()
	select {
	case o.changed <- struct{}{}:
	default:
	}
}

func (o *observer) wait(b *testing.B, n int, timeout time.Duration) []time.Duration {
	deadline := time.After(timeout)
	for {
		o.mu.Lock()
		done := len(o.running)
		o.mu.Unlock()
		if done >= n {
			break
		}
		select {
		case <-o.changed:
		case <-deadline:
			b.Fatalf("%d of %d pods Running in %s", done, n, timeout)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var lat []time.Duration
	for name, t := range o.running {
		lat = append(lat, t.Sub(o.start[name]))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat
}

func importInto(ctx context.Context, address, ns, tarball string) error {
	c, err := containerd.New(address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx = namespaces.WithNamespace(ctx, ns)
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	imgs, err := c.Import(ctx, f)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if err := containerd.NewImage(c, img).Unpack(ctx, "overlayfs"); err != nil {
			return err
		}
	}
	return nil
}

type rawResult struct{ concurrent, sequential []time.Duration }

// rawContainerd creates and starts containers of the demo image straight through
// containerd's client (no kubelet, no API, no network namespace): 30 at once, then 30 one by
// one; each is removed afterwards.
func rawContainerd(b *testing.B, ctx context.Context, address, logDir string) rawResult {
	c, err := containerd.New(address, containerd.WithDefaultNamespace("bench-raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx = namespaces.WithNamespace(ctx, "bench-raw")
	img, err := c.GetImage(ctx, "docker.io/library/skiff-demo:v1")
	if err != nil {
		b.Fatal(err)
	}
	_ = os.MkdirAll(logDir, 0o755)
	one := func(id string) time.Duration {
		start := time.Now()
		ctr, err := c.NewContainer(ctx, id, containerd.WithImage(img), containerd.WithNewSnapshot(id, img),
			containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithHostNamespace("network"), oci.WithEnv([]string{"PORT=" + strconv.Itoa(20000+len(id))})))
		if err != nil {
			b.Error(err)
			return 0
		}
		task, err := ctr.NewTask(ctx, cio.LogFile(filepath.Join(logDir, id+".log")))
		if err == nil {
			err = task.Start(ctx)
		}
		if err != nil {
			b.Error(err)
		}
		return time.Since(start)
	}
	cleanup := func() {
		cs, _ := c.Containers(ctx)
		for _, ctr := range cs {
			if t, err := ctr.Task(ctx, nil); err == nil {
				_, _ = t.Delete(ctx, containerd.WithProcessKill)
			}
			_ = ctr.Delete(ctx, containerd.WithSnapshotCleanup)
		}
	}
	var res rawResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range benchPods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := one(fmt.Sprintf("raw-c-%02d", i))
			mu.Lock()
			res.concurrent = append(res.concurrent, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	cleanup()
	for i := range benchPods {
		res.sequential = append(res.sequential, one(fmt.Sprintf("raw-s-%02d", i)))
	}
	cleanup()
	sort.Slice(res.concurrent, func(i, j int) bool { return res.concurrent[i] < res.concurrent[j] })
	sort.Slice(res.sequential, func(i, j int) bool { return res.sequential[i] < res.sequential[j] })
	return res
}

// cleanRuntime removes everything the kubelet ran (after it stopped).
func cleanRuntime(rt *ctrd.Runtime, cidr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_ = rt.UpdatePodCIDR(ctx, cidr)
	cs, _ := rt.ListContainers(ctx)
	for _, c := range cs {
		_ = rt.StopContainer(ctx, c.ID, 0)
		_ = rt.RemoveContainer(ctx, c.ID)
	}
	sbs, _ := rt.ListSandboxes(ctx)
	for _, sb := range sbs {
		_ = rt.RemoveSandbox(ctx, sb.ID)
	}
}

// cpuTime is a process's user+system CPU time.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
