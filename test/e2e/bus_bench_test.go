package e2e

// Fan-out benchmarks: what the event bus costs and saves against direct etcd watches.
//
//	go test ./test/e2e/ -run '^$' -bench Fanout -benchtime 1x
//
// Each benchmark is one fixed experiment that prints its own tables (fmt, so visible without
// -v) and reports its key figures as metrics. It ignores b.N: one call is the whole
// experiment, and it takes longer than the default -benchtime, so the framework does not call
// it again; -benchtime Nx would repeat it N times, each with a new cluster.
//
// etcd and NATS run as separate stock processes so that their CPU time can be read from
// /proc/PID/stat before and after each run; the apiserver runs in the test process, so its CPU
// shows in the "test proc" column together with the writers and the subscribers. On a small
// machine that sharing matters: at high fan-out the subscribers' decoding starves the
// apiserver, the achieved write rate falls below the target (the detail table says by how
// much) and latency is mostly queueing for CPU.
//
// Knobs: SKIFF_BENCH_FANOUT_SIZES="100" measures only the listed subscriber counts;
// SKIFF_BENCH_KUBELETS=1 runs the node fan-out with one kubelet (what the other 999 cost);
// SKIFF_BENCH_APISERVER=process runs the apiserver binary as its own process, so that its
// publisher is not starved by the subscribers in the test process (see "pub lag").

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// The fan-out workload: a paced writer updates fanoutPods pods fanoutRate times a second
// for fanoutWrites writes, each write stamping the pod with its send time.
const (
	fanoutNS      = "fanout"
	fanoutPods    = 50
	fanoutRate    = 1000 // writes per second
	fanoutWrites  = 3000 // 3 s at fanoutRate
	fanoutWriters = 100  // concurrent writers: enough to hold the rate while writes take up to 100 ms
	fanoutConns   = 10   // NATS connections, etcd client connections, apiserver connections
	// Subscribers that have not received everything this long after the last write count as
	// not keeping up; the run is cut off and reported as incomplete.
	fanoutStall    = 30 * time.Second
	fanoutMaxDrain = 3 * time.Minute

	annSent = "bench/sent" // time.Now().UnixNano() when the write was sent
	annRun  = "bench/run"  // which run the write belongs to
	annSeq  = "bench/seq"  // the write's number within its run
)

// fanoutSizes are the subscriber counts measured. SKIFF_BENCH_FANOUT_SIZES (e.g. "100")
// replaces them, to profile or repeat one size without the others.
var fanoutSizes = []int{1, 100, 1000}

func init() {
	env := os.Getenv("SKIFF_BENCH_FANOUT_SIZES")
	if env == "" {
		return
	}
	var sizes []int
	for _, f := range strings.Split(env, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			sizes = append(sizes, n)
		}
	}
	if len(sizes) > 0 {
		fanoutSizes = sizes
	}
}

// fanoutPod is the realistic pod the apiserver benchmark writes too.
func fanoutPod(ns, name string) *corev1.Pod { return testenv.RealisticPod(ns, name) }

// fanoutSink is one subscriber's record. Only the subscriber's own goroutine (the informer's
// Run goroutine, or the watch's reader) writes it, so the hot path takes no lock: the latency
// goes into a preallocated slot, then the count is published atomically for the poller.
type fanoutSink struct {
	run, warm string
	lat       []int64      // write-to-handler latencies, ns
	n         atomic.Int64 // deliveries of this run (may exceed len(lat) if something duplicates)
	last      atomic.Int64 // UnixNano of the last delivery
	warmed    atomic.Bool  // the warm-up write arrived: the subscriber is live
	// byWrite, if set, holds the latency of write k at index k (0: not delivered), so that
	// two subscribers can be compared write by write.
	byWrite []int64
}

func (s *fanoutSink) observe(obj scheme.Object) {
	a := obj.GetMetadata().GetAnnotations()
	switch a[annRun] {
	case s.run:
		now := time.Now().UnixNano()
		sent, _ := strconv.ParseInt(a[annSent], 10, 64)
		i := s.n.Load()
		if i < int64(len(s.lat)) {
			s.lat[i] = now - sent
		}
		if k, err := strconv.Atoi(a[annSeq]); err == nil && k >= 0 && k < len(s.byWrite) {
			s.byWrite[k] = now - sent
		}
		s.last.Store(now)
		s.n.Store(i + 1)
	case s.warm:
		s.warmed.Store(true)
	}
}

// fanoutResult is one run: one mode, one subscriber count.
type fanoutResult struct {
	mode                string // "bus" or "watch"
	subs                int
	p50, p99, max       time.Duration
	delivered, expected int64
	writes, writeErrs   int
	writeRate           float64 // achieved writes/s
	elapsed             time.Duration
	cpu                 benchCPUMeter
	setup               time.Duration // start to every subscriber live (warm-up write seen by all)
	synced              time.Duration // start to every informer synced / every watch created
	setupCPU            benchCPUMeter
	pubBatches          uint64        // the publisher's watermark puts during the run (at most 10 a second)
	natsRSS             int64         // nats-server's resident memory once every subscriber was live
	pubLag              time.Duration // last write acknowledged -> the stream held it (bus runs)
	leftover            int           // bus consumers still on the server after the informers stopped
	err                 error
}

func (r fanoutResult) deliveriesPerSec() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.delivered) / r.elapsed.Seconds()
}

// fanoutEnv is what every run of BenchmarkBusFanout shares.
type fanoutEnv struct {
	c       *benchCluster
	clients []client.Interface
	tmpl    []*corev1.Pod // the pods as created (no resourceVersion: updates are unconditional)
}

// BenchmarkBusFanout measures write-to-handler latency, delivery throughput and etcd's CPU
// with 1, 100 and 1,000 pod informers reading the bus, and in the same run, on the same etcd,
// the same workload with as many direct etcd watches. The bus latency includes the whole real
// path: apiserver write, etcd commit, the apiserver's one etcd watch, the JetStream publish,
// the consumer, the informer's decode and cache update.
func BenchmarkBusFanout(b *testing.B) {
	if testing.Short() {
		b.Skip("runs etcd and NATS processes and thousands of subscribers for a few minutes")
	}
	c := startBenchCluster(b)
	pods, _ := scheme.Default().ForName("pods")
	env := newFanoutEnv(b, c)
	jss := c.newJetStreams(b, fanoutConns)
	etcds := c.newEtcdClients(b, fanoutConns)

	// etcd's CPU with no writes (raft ticks, the publisher's election lease, client
	// keep-alives): the floor under every etcd CPU figure below, the longer the run the more.
	idle0 := c.cpu()
	time.Sleep(10 * time.Second)
	idleEtcd := c.cpu().sub(idle0).etcd

	logger := benchLogger()
	var results []fanoutResult
	for _, n := range fanoutSizes {
		// Bus: pod informers over all namespaces, spread over the NATS and apiserver connections.
		r := env.measure(b, "bus", n, func(ctx context.Context, sinks []*fanoutSink) (func(), error) {
			var wg sync.WaitGroup
			infs := make([]*informer.Informer, len(sinks))
			// One shared set of live feeds per NATS connection, as each process has: the
			// informers on a connection share one subscription and one decode per change.
			lives := make([]*bus.Live, len(jss))
			for i, js := range jss {
				lives[i] = bus.NewLive(js, scheme.Default())
			}
			for i, s := range sinks {
				inf := informer.New(informer.Config{Client: env.clients[i%len(env.clients)],
					JetStream: jss[i%len(jss)], Live: lives[i%len(jss)], Kind: pods, Logger: logger})
				inf.AddEventHandler(informer.HandlerFuncs{UpdateFunc: func(_, obj scheme.Object) { s.observe(obj) }})
				infs[i] = inf
				wg.Add(1)
				go func() { defer wg.Done(); _ = inf.Run(ctx) }()
			}
			syncCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			if !informer.WaitForCacheSync(syncCtx, infs...) {
				return wg.Wait, errors.New("informers did not sync within 3 minutes")
			}
			return wg.Wait, nil
		})
		results = append(results, r)

		// Direct etcd watches on the pods prefix, decoding each pod as an informer would.
		r = env.measure(b, "watch", n, func(ctx context.Context, sinks []*fanoutSink) (func(), error) {
			var wg, created sync.WaitGroup
			for i, s := range sinks {
				// Same client and same context: clientv3 multiplexes a client's watchers on one
				// gRPC stream, as the bus side shares its NATS connections.
				created.Add(1)
				wg.Add(1)
				go func() { defer wg.Done(); watchPods(ctx, etcds[i%len(etcds)], s, created.Done) }()
			}
			created.Wait()
			return wg.Wait, nil
		})
		results = append(results, r)
	}
	fanoutReport(b, results, idleEtcd)
}

// newFanoutEnv creates the benchmark's namespace and pods through the API and waits until the
// publisher runs.
func newFanoutEnv(b *testing.B, c *benchCluster) *fanoutEnv {
	b.Helper()
	ctx := context.Background()
	env := &fanoutEnv{c: c, clients: c.newClients(b, fanoutConns)}
	ns, err := env.clients[0].Create(ctx, &corev1.Namespace{ApiVersion: "v1", Kind: "Namespace",
		Metadata: &metav1.ObjectMeta{Name: fanoutNS}})
	if err != nil {
		b.Fatal(err)
	}
	for i := range fanoutPods {
		obj, err := env.clients[0].Create(ctx, fanoutPod(fanoutNS, fmt.Sprintf("p-%02d", i)))
		if err != nil {
			b.Fatal(err)
		}
		p := obj.(*corev1.Pod)
		p.Metadata.ResourceVersion = ""
		env.tmpl = append(env.tmpl, p)
	}
	nsRev, _ := strconv.ParseInt(ns.GetMetadata().GetResourceVersion(), 10, 64)
	c.waitPublished(b, nsRev) // the publisher is elected and running
	return env
}

// watchPods is one direct etcd watch on the pods prefix, decoding each pod as an informer
// would, until ctx is done; created is called once the watch exists.
func watchPods(ctx context.Context, etcd *clientv3.Client, s *fanoutSink, created func()) {
	wch := etcd.Watch(ctx, registry.DefaultPrefix+"/pods/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	first := true
	for resp := range wch {
		if first {
			first = false
			created()
		}
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.PUT {
				continue
			}
			var pod corev1.Pod
			if err := storage.Decode(ev.Kv.Value, ev.Kv.ModRevision, &pod); err == nil {
				s.observe(&pod)
			}
		}
	}
	if first {
		created()
	}
}

// measure starts n subscribers with start, runs the workload against them and collects the
// result (a named result: the deferred clean-up adds to it).
func (env *fanoutEnv) measure(b *testing.B, mode string, n int,
	start func(ctx context.Context, sinks []*fanoutSink) (wait func(), err error)) (r fanoutResult) {
	b.Helper()
	r = fanoutResult{mode: mode, subs: n}
	runID := mode + "-" + strconv.Itoa(n)
	sinks := make([]*fanoutSink, n)
	for i := range sinks {
		sinks[i] = &fanoutSink{run: runID, warm: runID + "-warm", lat: make([]int64, fanoutWrites)}
	}
	// Start from a quiet system: the publisher shares this process's CPU with the previous
	// run's subscribers and may still be publishing that run's writes. Without this wait, a
	// bus run after a busy run measures the publisher's backlog, not the fan-out.
	env.c.waitStreamCaughtUp(b)
	ctx, cancel := context.WithCancel(context.Background())
	began, cpuSetup := time.Now(), env.c.cpu()
	wait, err := start(ctx, sinks)
	r.synced = time.Since(began)
	defer func() {
		cancel()
		wait()
		if mode == "bus" {
			// Count (then remove) the ordered consumers the stopped informers left behind.
			dctx, c := context.WithTimeout(context.Background(), time.Minute)
			defer c()
			if info, err := env.c.streamInfo(dctx); err == nil {
				r.leftover = info.State.Consumers
			}
			if _, err := env.c.deleteConsumers(dctx); err != nil {
				b.Logf("deleting leftover consumers: %v", err)
			}
		}
	}()
	if err != nil {
		r.err = err
		b.Errorf("%s %d: %v", mode, n, err)
		return r
	}
	// Warm-up: one write every subscriber must see before the clock starts, so that the
	// figures are for live subscribers, not for consumers still being created.
	if err := env.warmUp(ctx, runID, sinks); err != nil {
		r.err = err
		b.Errorf("%s %d: %v", mode, n, r.err)
		return r
	}
	r.setup = time.Since(began)
	r.setupCPU = env.c.cpu().sub(cpuSetup)
	r.natsRSS = benchRSS(env.c.nats.Pid())

	cpu0, batches0 := env.c.cpu(), env.c.watermarkPuts(ctx)
	t0, acked, errs, writeEnd := env.write(ctx, runID)
	// etcd's part of a bus run ends when the publisher has read the last write (the stream
	// holds it); however long the informers then take, etcd is not involved. Measured on the
	// side, so that the wait for deliveries below is not delayed.
	type caughtUp struct {
		cpu benchCPUMeter
		at  time.Time
	}
	published := make(chan caughtUp, 1)
	if mode == "bus" {
		go func() {
			at, err := env.c.streamCaughtUp(ctx, fanoutMaxDrain)
			if err != nil {
				published <- caughtUp{cpu: benchCPUMeter{etcd: -1}}
				return
			}
			published <- caughtUp{env.c.cpu(), at}
		}()
	}
	r.writes, r.writeErrs = acked, errs
	r.writeRate = float64(acked+errs) / writeEnd.Sub(t0).Seconds()
	if errs > 0 {
		b.Errorf("%s %d: %d of %d writes failed", mode, n, errs, fanoutWrites)
	}
	r.expected = int64(acked) * int64(n)

	// Wait for every subscriber to get every write, or for the subscribers to stall.
	var total int64
	progressAt, lastTotal := time.Now(), int64(-1)
	for {
		total = 0
		for _, s := range sinks {
			total += s.n.Load()
		}
		if total >= r.expected {
			break
		}
		if total != lastTotal {
			progressAt, lastTotal = time.Now(), total
		}
		if time.Since(progressAt) > fanoutStall || time.Since(writeEnd) > fanoutMaxDrain {
			r.err = fmt.Errorf("delivered %d of %d", total, r.expected)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.cpu = env.c.cpu().sub(cpu0)
	if mode == "bus" {
		r.cpu.etcd = -1
		if pub := <-published; pub.cpu.etcd >= 0 {
			r.cpu.etcd = pub.cpu.etcd - cpu0.etcd
			r.pubLag = pub.at.Sub(writeEnd)
		}
	}
	r.pubBatches = env.c.watermarkPuts(ctx) - batches0
	r.delivered = total
	if total > r.expected { // each subscriber must see each write exactly once
		b.Errorf("%s %d: %d deliveries for %d expected: duplicates", mode, n, total, r.expected)
	}

	var last int64
	all := make([]int64, 0, total)
	for _, s := range sinks {
		last = max(last, s.last.Load())
		all = append(all, s.lat[:min(s.n.Load(), int64(len(s.lat)))]...)
	}
	r.elapsed = time.Unix(0, last).Sub(t0)
	slices.Sort(all)
	r.p50, r.p99 = benchPercentile(all, 0.50), benchPercentile(all, 0.99)
	if len(all) > 0 {
		r.max = time.Duration(all[len(all)-1])
	}
	// Progress, as each run ends (the tables come at the end).
	fmt.Printf("  %-5s %4d: synced %s, live %s (setup CPU: NATS %s, test proc %s); %d writes at %.0f/s, %d watermark puts; delivered %d/%d, p50 %s p99 %s\n",
		mode, n, r.synced.Round(time.Millisecond), r.setup.Round(time.Millisecond), benchCPU(r.setupCPU.nats),
		benchCPU(r.setupCPU.self), acked, r.writeRate, r.pubBatches, r.delivered, r.expected, benchDur(r.p50), benchDur(r.p99))
	return r
}

// warmUp writes a warm-up update (again every 5 s) until every sink has seen one.
func (env *fanoutEnv) warmUp(ctx context.Context, runID string, sinks []*fanoutSink) error {
	warmDeadline := time.Now().Add(3 * time.Minute)
	for i := 0; ; i++ {
		if i%100 == 0 { // again every 5 s, in case one was lost to a subscriber still starting
			p := proto.Clone(env.tmpl[0]).(*corev1.Pod)
			p.Metadata.Annotations[annRun] = runID + "-warm"
			p.Metadata.Annotations[annSent] = strconv.Itoa(i)
			if _, err := env.clients[0].Update(ctx, p); err != nil {
				return fmt.Errorf("warm-up write: %w", err)
			}
		}
		live := 0
		for _, s := range sinks {
			if s.warmed.Load() {
				live++
			}
		}
		if live == len(sinks) {
			return nil
		}
		if time.Now().After(warmDeadline) {
			return fmt.Errorf("only %d of %d subscribers live after 3 minutes", live, len(sinks))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// write sends fanoutWrites updates paced at fanoutRate from fanoutWriters goroutines: write k
// is due at t0 + k/rate, and a writer that fell behind catches up without waiting. Each write
// stamps its pod with the time it was sent.
func (env *fanoutEnv) write(ctx context.Context, runID string) (t0 time.Time, acked, errs int, end time.Time) {
	interval := time.Second / fanoutRate
	t0 = time.Now().Add(2 * time.Millisecond)
	var next, ok, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range fanoutWriters {
		cl := env.clients[w%len(env.clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				if k >= fanoutWrites {
					return
				}
				if d := time.Until(t0.Add(time.Duration(k) * interval)); d > 0 {
					time.Sleep(d)
				}
				p := proto.Clone(env.tmpl[k%int64(len(env.tmpl))]).(*corev1.Pod)
				p.Metadata.Annotations[annRun] = runID
				p.Metadata.Annotations[annSeq] = strconv.FormatInt(k, 10)
				p.Metadata.Annotations[annSent] = strconv.FormatInt(time.Now().UnixNano(), 10)
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if _, err := cl.Update(cctx, p); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	return t0, int(ok.Load()), int(failed.Load()), time.Now()
}

// fanoutReport prints the side-by-side table and reports the key figures as metrics.
func fanoutReport(b *testing.B, results []fanoutResult, idleEtcd time.Duration) {
	get := func(mode string, n int) fanoutResult {
		for _, r := range results {
			if r.mode == mode && r.subs == n {
				return r
			}
		}
		return fanoutResult{}
	}
	where := "in the test process"
	if benchAPIServerProcess() {
		where = "as its own process"
	}
	fmt.Printf("\nFan-out of %d pod updates at %d/s (%d pods, ~1 KiB each), all-namespace pod informers on the bus vs direct etcd watches (apiserver %s):\n",
		fanoutWrites, fanoutRate, fanoutPods, where)
	fmt.Printf("%-6s | %8s %8s %11s %10s %9s | %8s %8s %11s %10s\n", "subs",
		"bus p50", "bus p99", "bus deliv/s", "etcd CPU", "NATS CPU", "etcd p50", "etcd p99", "etcd deliv/s", "etcd CPU")
	for _, n := range fanoutSizes {
		bs, w := get("bus", n), get("watch", n)
		fmt.Printf("%-6d | %8s %8s %11.0f %10s %9s | %8s %8s %11.0f %10s\n", n,
			benchDur(bs.p50), benchDur(bs.p99), bs.deliveriesPerSec(), benchCPU(bs.cpu.etcd), benchCPU(bs.cpu.nats),
			benchDur(w.p50), benchDur(w.p99), w.deliveriesPerSec(), benchCPU(w.cpu.etcd))
	}
	fmt.Printf("\n%-6s %-5s | %9s %9s %8s %6s %8s %9s %8s %9s %9s %9s %7s %8s %8s %8s\n", "subs", "mode",
		"delivered", "expected", "writes/s", "errors", "synced", "live", "max", "test proc", "apiserver", "NATS CPU", "wmarks", "pub lag", "NATS RSS", "leftover")
	for _, n := range fanoutSizes {
		for _, mode := range []string{"bus", "watch"} {
			r := get(mode, n)
			left, lag := "-", "-"
			if mode == "bus" {
				left, lag = strconv.Itoa(r.leftover), benchDur(r.pubLag)
			}
			api := "in proc"
			if r.cpu.api >= 0 {
				api = benchCPU(r.cpu.api)
			}
			fmt.Printf("%-6d %-5s | %9d %9d %8.0f %6d %8s %9s %8s %9s %9s %9s %7d %8s %8s %8s\n", n, mode, r.delivered, r.expected,
				r.writeRate, r.writeErrs, r.synced.Round(time.Millisecond), r.setup.Round(time.Millisecond),
				benchDur(r.max), benchCPU(r.cpu.self), api, benchCPU(r.cpu.nats), r.pubBatches, lag, benchMiB(r.natsRSS), left)
		}
	}
	fmt.Println("  test proc = this process: writers and subscribers (informers or watch readers), and the apiserver")
	fmt.Println("             unless it runs as its own process (SKIFF_BENCH_APISERVER=process; then its CPU is under apiserver).")
	fmt.Println("  synced = informers listed / watches created; live = every subscriber saw a warm-up write.")
	fmt.Println("  wmarks = the publisher's watermark puts (at most 10 a second, fewer while it is behind).")
	fmt.Println("  pub lag = from the last write's acknowledgement until the stream held it: the publisher's backlog.")
	fmt.Println("  leftover = JetStream consumers still on the server after every informer stopped (nats.go lets an")
	fmt.Println("             ordered consumer linger 5 min; the benchmark deletes them before the next run).")
	fmt.Println("  bus latency includes the apiserver's etcd watch -> JetStream publish hop.")
	fmt.Println("  etcd CPU: from the first write until etcd's part was done: the stream held the last write (bus),")
	fmt.Println("  or the last watcher received it (watch). NATS CPU and test proc: until the last delivery.")
	fmt.Printf("  etcd idle, for scale: %s CPU per 10 s with no writes.\n", benchCPU(idleEtcd))

	ratio := func(a, b time.Duration) string {
		if b <= 0 || a < 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", float64(a)/float64(b))
	}
	first, lastN := fanoutSizes[0], fanoutSizes[len(fanoutSizes)-1]
	bus1, busN := get("bus", first), get("bus", lastN)
	w1, wN := get("watch", first), get("watch", lastN)
	if lastN > first {
		fmt.Printf("\netcd CPU, %d vs %d subscribers: bus %s (%s -> %s), etcd watch %s (%s -> %s)\n", lastN, first,
			ratio(busN.cpu.etcd, bus1.cpu.etcd), benchCPU(bus1.cpu.etcd), benchCPU(busN.cpu.etcd),
			ratio(wN.cpu.etcd, w1.cpu.etcd), benchCPU(w1.cpu.etcd), benchCPU(wN.cpu.etcd))
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	if bus1, w1 := get("bus", 1), get("watch", 1); bus1.subs == 1 && w1.subs == 1 {
		fmt.Printf("goal: bus p99 / direct etcd watch p99, 1 reader at %d writes/s, <= 2.00x: %s (bus p50 %s p99 %s, watch p50 %s p99 %s; p50 %s) %s\n",
			fanoutRate, ratio(bus1.p99, w1.p99), benchDur(bus1.p50), benchDur(bus1.p99), benchDur(w1.p50), benchDur(w1.p99),
			ratio(bus1.p50, w1.p50), verdict(bus1.err == nil && w1.err == nil && bus1.p99 > 0 && w1.p99 > 0 && bus1.p99 <= 2*w1.p99))
	}
	if b100 := get("bus", 100); b100.subs == 100 {
		w100 := get("watch", 100)
		fmt.Printf("goal: bus p99 at %d writes/s with 100 informers < 10ms: %s (p50 %s; vs 100 direct etcd watches: p50 %s, p99 %s) %s\n",
			fanoutRate, benchDur(b100.p99), benchDur(b100.p50), ratio(b100.p50, w100.p50), ratio(b100.p99, w100.p99),
			verdict(b100.err == nil && b100.p99 > 0 && b100.p99 < 10*time.Millisecond))
	}
	if lastN > first {
		fmt.Printf("goal: etcd CPU with %d bus subscribers <= with 1 etcd watcher: %s vs %s %s\n", lastN,
			benchCPU(busN.cpu.etcd), benchCPU(w1.cpu.etcd), verdict(busN.err == nil && busN.cpu.etcd <= w1.cpu.etcd))
	}
	for _, r := range results {
		if r.err != nil {
			fmt.Printf("incomplete: %s with %d subscribers: %v\n", r.mode, r.subs, r.err)
		}
	}

	for _, r := range results {
		name := r.mode + strconv.Itoa(r.subs)
		b.ReportMetric(float64(r.p50)/1e6, name+"-p50-ms")
		b.ReportMetric(float64(r.p99)/1e6, name+"-p99-ms")
		b.ReportMetric(r.cpu.etcd.Seconds(), name+"-etcd-cpu-s")
	}
	if bus1.cpu.etcd > 0 {
		b.ReportMetric(float64(busN.cpu.etcd)/float64(bus1.cpu.etcd), "bus-etcd-cpu-ratio")
	}
	if w1.cpu.etcd > 0 {
		b.ReportMetric(float64(wN.cpu.etcd)/float64(w1.cpu.etcd), "watch-etcd-cpu-ratio")
	}
}

// The node fan-out: simulated kubelets, each following only its own node's bus subjects.
const (
	nodePods    = 10_000 // bound round-robin: 10 per kubelet
	nodeNS      = "nodes"
	nodeWorkers = 32
)

// nodeKubelets is how many kubelets BenchmarkNodeFanout simulates. SKIFF_BENCH_KUBELETS
// changes it, e.g. to 1 to see what the other 999 consumers cost NATS.
var nodeKubelets = 1000

func init() {
	if n, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_KUBELETS")); err == nil && n > 0 && n <= nodePods {
		nodeKubelets = n
	}
}

// benchKubelet is one simulated node agent: a bus subscription on bus.NodeFilter(its node), which
// is exactly what an informer with Config.NodeName reads. It counts every message delivered,
// not what an informer would keep, so a misrouted message cannot hide.
type benchKubelet struct {
	idx  int
	name string
	n    atomic.Int64 // messages delivered
	last atomic.Int64 // UnixNano of the last one
	// Written by the subscription's goroutine only; read after it returned.
	got []benchKubeletMsg
}

type benchKubeletMsg struct {
	typ  bus.EventType
	pod  int    // index in np-%05d, -1 if not a benchmark pod
	node string // spec.nodeName in the message
	lat  int64  // bind sent -> delivery, ns
}

// BenchmarkNodeFanout binds 10,000 pods round-robin to 1,000 simulated kubelets and checks
// that each kubelet receives exactly its own 10 pods and nothing else: the node subjects make
// the fan-out 10,000 messages where a broadcast would deliver 10,000,000.
func BenchmarkNodeFanout(b *testing.B) {
	if testing.Short() {
		b.Skip("runs etcd and NATS processes, 1,000 subscriptions and 20,000 writes")
	}
	c := startBenchCluster(b)
	ctx := context.Background()
	clients := c.newClients(b, 4)
	jss := c.newJetStreams(b, fanoutConns)

	ns, err := clients[0].Create(ctx, &corev1.Namespace{ApiVersion: "v1", Kind: "Namespace",
		Metadata: &metav1.ObjectMeta{Name: nodeNS}})
	if err != nil {
		b.Fatal(err)
	}
	after, _ := strconv.ParseInt(ns.GetMetadata().GetResourceVersion(), 10, 64)
	c.waitPublished(b, after)

	// The kubelets start before any pod exists, so they also prove that creating unbound pods
	// sends them nothing.
	bindSent := make([]atomic.Int64, nodePods)
	kubelets := make([]*benchKubelet, nodeKubelets)
	subCtx, stopSubs := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var subErrs atomic.Int64
	setupStart := time.Now()
	for i := range kubelets {
		k := &benchKubelet{idx: i, name: "node-" + strconv.Itoa(i)}
		kubelets[i] = k
		sub := bus.NewSubscription(jss[i%len(jss)], scheme.Default())
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sub.Run(subCtx, []string{bus.NodeFilter(k.name)}, after, func(ev bus.Event) error {
				now := time.Now().UnixNano()
				m := benchKubeletMsg{typ: ev.Type, pod: -1}
				if pod, ok := ev.Object.(*corev1.Pod); ok {
					m.node = pod.GetSpec().GetNodeName()
					if idx, err := strconv.Atoi(strings.TrimPrefix(pod.GetMetadata().GetName(), "np-")); err == nil && idx >= 0 && idx < nodePods {
						m.pod = idx
						m.lat = now - bindSent[idx].Load()
					}
				}
				k.got = append(k.got, m)
				k.last.Store(now)
				k.n.Add(1)
				return nil
			})
			if err != nil && subCtx.Err() == nil {
				subErrs.Add(1)
				b.Errorf("kubelet %s: subscription ended: %v", k.name, err)
			}
		}()
	}
	// Every kubelet's consumer exists on the server before the first write.
	for deadline := time.Now().Add(3 * time.Minute); ; {
		info, err := c.streamInfo(ctx)
		if err == nil && info.State.Consumers >= nodeKubelets {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("kubelet consumers not created within 3 minutes (%v, %+v)", err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	setup := time.Since(setupStart)
	// What the idle consumers cost NATS with nothing published (pull requests, heartbeats).
	idle0 := c.cpu()
	time.Sleep(2 * time.Second)
	idle := c.cpu().sub(idle0)
	natsRSS := benchRSS(c.nats.Pid())
	total := func() (n int64) {
		for _, k := range kubelets {
			n += k.n.Load()
		}
		return n
	}

	// Phase 1: create the pods, unbound.
	cpuC0 := c.cpu()
	createStart := time.Now()
	var createErrs atomic.Int64
	benchParallel(nodeWorkers, nodePods, func(w, j int) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := clients[w%len(clients)].Create(cctx, fanoutPod(nodeNS, fmt.Sprintf("np-%05d", j))); err != nil {
			createErrs.Add(1)
		}
	})
	createTime := time.Since(createStart)
	createPublished := c.waitStreamCaughtUp(b).Sub(createStart)
	cpuCreate := c.cpu().sub(cpuC0) // until the stream held every create
	if n := createErrs.Load(); n > 0 {
		b.Fatalf("%d of %d creates failed", n, nodePods)
	}
	time.Sleep(500 * time.Millisecond) // let the publisher catch up before counting
	duringCreate := total()

	// Phase 2: bind pod j to node j%1000.
	cpu0, batches0 := c.cpu(), c.watermarkPuts(ctx)
	bindStart := time.Now()
	var bindErrs atomic.Int64
	benchParallel(nodeWorkers, nodePods, func(w, j int) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		bindSent[j].Store(time.Now().UnixNano())
		if err := clients[w%len(clients)].Bind(cctx, nodeNS, fmt.Sprintf("np-%05d", j), "node-"+strconv.Itoa(j%nodeKubelets)); err != nil {
			bindErrs.Add(1)
		}
	})
	bindTime := time.Since(bindStart)
	bindPublished := c.waitStreamCaughtUp(b).Sub(bindStart)
	bindBatches := c.watermarkPuts(ctx) - batches0
	if n := bindErrs.Load(); n > 0 {
		b.Errorf("%d of %d binds failed", n, nodePods)
	}
	want := duringCreate + int64(nodePods) - bindErrs.Load()
	progressAt, lastTotal := time.Now(), int64(-1)
	for {
		t := total()
		if t >= want {
			break
		}
		if t != lastTotal {
			progressAt, lastTotal = time.Now(), t
		}
		if time.Since(progressAt) > fanoutStall {
			b.Errorf("kubelets stalled at %d of %d messages", t, want)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu := c.cpu().sub(cpu0)
	var last int64
	for _, k := range kubelets {
		last = max(last, k.last.Load())
	}
	firstBindToLast := time.Unix(0, last).Sub(bindStart)
	// Anything misrouted or duplicated would arrive along with the rest; wait a little for
	// stragglers before stopping the kubelets and checking.
	time.Sleep(time.Second)
	stopSubs()
	wg.Wait()

	// Each kubelet: exactly its own 10 pods, once each, as ADDED on its node; nothing else.
	var delivered, wrong int
	var lats []int64
	for _, k := range kubelets {
		delivered += len(k.got)
		own := map[int]int{}
		var problems []string
		for _, m := range k.got {
			switch {
			case m.pod < 0 || m.pod%nodeKubelets != k.idx:
				problems = append(problems, fmt.Sprintf("foreign pod %d (node %q)", m.pod, m.node))
			case m.node != k.name || m.typ != bus.Added:
				problems = append(problems, fmt.Sprintf("pod %d as %s on node %q", m.pod, m.typ, m.node))
			default:
				own[m.pod]++
				lats = append(lats, m.lat)
			}
		}
		for j := k.idx; j < nodePods; j += nodeKubelets {
			if own[j] != 1 {
				problems = append(problems, fmt.Sprintf("own pod %d delivered %d times", j, own[j]))
			}
		}
		if len(problems) > 0 {
			wrong++
			if wrong <= 10 {
				b.Errorf("kubelet %s received %d messages: %s", k.name, len(k.got), strings.Join(problems, "; "))
			}
		}
	}
	if wrong > 10 {
		b.Errorf("... %d kubelets in all received something other than exactly their own pods", wrong)
	}
	slices.Sort(lats)
	broadcast := int64(nodePods) * int64(nodeKubelets)

	fmt.Printf("\nNode fan-out: %d simulated kubelets (bus subscriptions on %d NATS connections), %d pods bound round-robin (%d each):\n",
		nodeKubelets, fanoutConns, nodePods, nodePods/nodeKubelets)
	fmt.Printf("  kubelet subscriptions ready in %s; NATS RSS then %s; NATS CPU over 2 s idle: %s\n",
		setup.Round(time.Millisecond), benchMiB(natsRSS), benchCPU(idle.nats))
	fmt.Printf("  create %d unbound pods: %s (%.0f/s), all on the stream after %s; messages to kubelets meanwhile: %d; etcd CPU %s, NATS CPU %s\n",
		nodePods, createTime.Round(time.Millisecond), float64(nodePods)/createTime.Seconds(),
		createPublished.Round(time.Millisecond), duringCreate, benchCPU(cpuCreate.etcd), benchCPU(cpuCreate.nats))
	fmt.Printf("  bind %d pods: %s (%.0f/s); the stream held every binding %s after the first (%d watermark puts)\n",
		nodePods, bindTime.Round(time.Millisecond), float64(nodePods)/bindTime.Seconds(), bindPublished.Round(time.Millisecond),
		bindBatches)
	fmt.Printf("  %-32s %12s\n", "messages delivered to kubelets", commas(delivered))
	fmt.Printf("  %-32s %12s  (%.0fx more)\n", "a broadcast of the bindings", commas(int(broadcast)), float64(broadcast)/float64(max(delivered, 1)))
	fmt.Printf("  %-32s %12d of %d\n", "kubelets with exactly their pods", nodeKubelets-wrong, nodeKubelets)
	fmt.Printf("  first bind -> last delivery      %12s\n", firstBindToLast.Round(time.Millisecond))
	fmt.Printf("  bind -> kubelet latency          %12s p50, %s p99\n", benchDur(benchPercentile(lats, 0.5)), benchDur(benchPercentile(lats, 0.99)))
	if cpu.api >= 0 {
		fmt.Printf("  CPU, first bind -> last delivery: etcd %s, NATS %s, apiserver %s, test proc (binders, kubelets) %s\n",
			benchCPU(cpu.etcd), benchCPU(cpu.nats), benchCPU(cpu.api), benchCPU(cpu.self))
	} else {
		fmt.Printf("  CPU, first bind -> last delivery: etcd %s, NATS %s, test proc (apiserver, binders, kubelets) %s\n",
			benchCPU(cpu.etcd), benchCPU(cpu.nats), benchCPU(cpu.self))
	}

	b.ReportMetric(float64(delivered), "delivered")
	b.ReportMetric(firstBindToLast.Seconds(), "bind-to-last-s")
	b.ReportMetric(float64(benchPercentile(lats, 0.99))/1e6, "bind-p99-ms")
	b.ReportMetric(cpu.etcd.Seconds(), "etcd-cpu-s")
	b.ReportMetric(cpu.nats.Seconds(), "nats-cpu-s")
}

// benchParallel runs do(worker, j) for j in [0, n) on workers goroutines.
func benchParallel(workers, n int, do func(w, j int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := next.Add(1) - 1; j < int64(n); j = next.Add(1) - 1 {
				do(w, int(j))
			}
		}()
	}
	wg.Wait()
}
