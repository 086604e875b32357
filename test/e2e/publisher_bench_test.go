package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// The publisher-throughput workload: pods updated straight in etcd, as fast as etcd takes
// them, half of them bound to nodes so that each of their changes is published twice (the
// object's subject and the node's).
const (
	pubPods     = 2000
	pubNodes    = 100
	pubNS       = "pubload"
	pubWriteFor = 10 * time.Second
	pubClients  = 8 // etcd client connections the writers share
)

var pubWriterCounts = []int{16, 64}

// pubResult is one load level.
type pubResult struct {
	writers         int
	elapsed         time.Duration
	puts, putErrs   int64
	expectedMsgs    int64 // messages the puts of the window call for
	publishedMsgs   int64 // messages the stream acknowledged during the window (publisher metric)
	lagRevs, lagSec []float64
	cpu             benchCPUMeter // writes start -> caught up
	finalRevs       float64       // lag when the writes stopped
	finalSec        float64
	catchUp         time.Duration // writes stopped -> the stream held the last one
	streamMsgs      uint64        // stream messages added, writes start -> caught up
	streamExpected  int64
	err             error
}

// BenchmarkPublisherThroughput measures whether the publisher keeps up with etcd's maximum
// write rate on this machine: writers at 16 and then 64 concurrent clients update pods
// directly in etcd for 10 s each (no apiserver in the write path, so etcd is the limit), and
// the publisher turns every change into its messages. It reports etcd's puts/s, the messages/s
// the publisher had acknowledged meanwhile against what those puts call for, its lag
// (skiff_bus_publisher_lag_*) sampled twice a second, and how long it took to catch up after
// the writes stopped.
//
//	go test ./test/e2e/ -run '^$' -bench PublisherThroughput -benchtime 1x
//
// SKIFF_BENCH_APISERVER=process runs the apiserver (and so the publisher) as its own process,
// as in production; otherwise it shares the test process's CPU with the writers.
func BenchmarkPublisherThroughput(b *testing.B) {
	if testing.Short() {
		b.Skip("runs etcd and NATS processes and writes to etcd as fast as it takes writes")
	}
	c := startBenchCluster(b)
	ctx := context.Background()
	etcds := c.newEtcdClients(b, pubClients)

	// Each pod alternates between two stored values that differ in an annotation only
	// (MODIFIED, no selector change), encoded once so that the writers cost little CPU.
	pods := make([]pubPod, pubPods)
	for i := range pods {
		p := fanoutPod(pubNS, fmt.Sprintf("pp-%05d", i))
		if i%2 == 1 {
			p.Spec.NodeName = "node-" + strconv.Itoa(i%pubNodes)
		}
		pods[i] = pubPod{key: registry.DefaultPrefix + "/pods/" + pubNS + "/" + p.GetMetadata().GetName(), bound: i%2 == 1}
		for v := range pods[i].values {
			p.Metadata.Annotations["bench/variant"] = strconv.Itoa(v)
			enc, err := storage.Encode(p)
			if err != nil {
				b.Fatal(err)
			}
			pods[i].values[v] = string(enc)
		}
	}
	var createErrs atomic.Int64
	benchParallel(32, pubPods, func(w, j int) {
		if _, err := etcds[w%len(etcds)].Put(ctx, pods[j].key, pods[j].values[0]); err != nil {
			createErrs.Add(1)
		}
	})
	if n := createErrs.Load(); n > 0 {
		b.Fatalf("%d of %d creates failed", n, pubPods)
	}
	c.waitStreamCaughtUp(b)

	var results []pubResult
	for _, writers := range pubWriterCounts {
		results = append(results, c.publisherLoad(b, etcds, pods, writers))
	}
	drain := c.publisherDrain(b, etcds, pods, pubWriterCounts[len(pubWriterCounts)-1])
	pubReport(b, results, drain)
}

// pubDrain is the backlog phase: what the publisher does when it starts far behind.
type pubDrain struct {
	writers    int
	puts       int64
	putRate    float64 // etcd puts/s while the publisher was stopped
	msgs       int64   // messages the backlog calls for
	startDelay time.Duration
	drain      time.Duration // first message published -> caught up
	published  uint64
	cpu        benchCPUMeter // the drain
	bareWatch  time.Duration // a bare etcd watch reading the same backlog
	bareEvents int64
	err        error
}

// bareRate is the bare etcd watch's rate, in messages (as the publisher would publish them).
func (d pubDrain) bareRate() float64 {
	if d.bareWatch <= 0 || d.puts == 0 {
		return 0
	}
	return float64(d.bareEvents) / d.bareWatch.Seconds() * float64(d.msgs) / float64(d.puts)
}

func (d pubDrain) rate() float64 {
	if d.drain <= 0 {
		return 0
	}
	return float64(d.published) / d.drain.Seconds()
}

// publisherDrain stops the apiserver, writes at etcd's maximum rate for pubWriteFor, starts the
// apiserver again and measures how fast its publisher drains the backlog: the publisher's own
// maximum rate, whatever the rate etcd takes writes at.
func (c *benchCluster) publisherDrain(b *testing.B, etcds []*clientv3.Client, pods []pubPod, writers int) pubDrain {
	b.Helper()
	ctx := context.Background()
	d := pubDrain{writers: writers}
	c.waitStreamCaughtUp(b)
	c.stopAPIServer()
	info0, err := c.streamInfo(ctx)
	if err != nil {
		b.Fatal(err)
	}
	from, err := etcds[0].Get(ctx, "health")
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	puts, bound, errs := pubWrite(ctx, etcds, pods, writers, start.Add(pubWriteFor))
	d.puts, d.msgs = puts, puts+bound
	d.putRate = float64(puts) / time.Since(start).Seconds()
	if errs > 0 {
		b.Errorf("backlog: %d puts failed", errs)
	}
	cpu0 := c.cpu()
	resumed := time.Now()
	c.startAPIServer(b)
	// The first message after the restart starts the drain; the election (a killed process's
	// lease lasts 5 s) and the resume are not the publisher's rate.
	var first time.Time
	for deadline := time.Now().Add(time.Minute); ; {
		if info, err := c.streamInfo(ctx); err == nil && info.State.LastSeq > info0.State.LastSeq {
			first = time.Now()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the restarted publisher published nothing within a minute")
		}
		time.Sleep(2 * time.Millisecond)
	}
	d.startDelay = first.Sub(resumed)
	caughtUp, err := c.streamCaughtUp(ctx, 5*time.Minute)
	if err != nil {
		d.err = err
		b.Errorf("backlog: %v", err)
	}
	d.drain = caughtUp.Sub(first)
	d.cpu = c.cpu().sub(cpu0)
	if info, err := c.streamInfo(ctx); err == nil {
		d.published = info.State.LastSeq - info0.State.LastSeq
	}
	if int64(d.published) != d.msgs {
		b.Errorf("backlog: the stream gained %d messages for %d puts that call for %d", d.published, d.puts, d.msgs)
	}
	// The baseline: a bare etcd watch (with previous values, as the publisher's) reading the
	// same backlog, from a fresh client.
	cl := c.newEtcdClients(b, 1)[0]
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	wstart, events := time.Now(), int64(0)
	for resp := range cl.Watch(wctx, registry.DefaultPrefix+"/pods/"+pubNS+"/", clientv3.WithPrefix(),
		clientv3.WithRev(from.Header.Revision+1), clientv3.WithPrevKV()) {
		events += int64(len(resp.Events))
		if events >= d.puts {
			break
		}
	}
	d.bareWatch = time.Since(wstart)
	d.bareEvents = events
	fmt.Printf("  backlog: %d puts (%.0f/s) while the apiserver was down; restarted, first message after %s, %d messages in %s (%.0f/s); a bare etcd watch read the backlog in %s\n",
		d.puts, d.putRate, d.startDelay.Round(time.Millisecond), d.published, d.drain.Round(time.Millisecond), d.rate(),
		d.bareWatch.Round(time.Millisecond))
	return d
}

// pubWrite runs writers putting pods round-robin (each put alternates a pod's two values)
// until deadline, and counts the puts, those of bound pods and the failures.
func pubWrite(ctx context.Context, etcds []*clientv3.Client, pods []pubPod, writers int, deadline time.Time) (puts, bound, errs int64) {
	var next, nPuts, nBound, nErrs atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := etcds[w%len(etcds)]
			for time.Now().Before(deadline) {
				k := next.Add(1)
				p := pods[k%int64(len(pods))]
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Put(cctx, p.key, p.values[(k/int64(len(pods))+1)%2])
				cancel()
				if err != nil {
					nErrs.Add(1)
					continue
				}
				nPuts.Add(1)
				if p.bound {
					nBound.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return nPuts.Load(), nBound.Load(), nErrs.Load()
}

// pubPod is one pod of the workload: its key and two stored values.
type pubPod struct {
	key    string
	values [2]string
	bound  bool
}

// publisherLoad runs writers against etcd for pubWriteFor and measures the publisher.
func (c *benchCluster) publisherLoad(b *testing.B, etcds []*clientv3.Client, pods []pubPod, writers int) pubResult {
	b.Helper()
	ctx := context.Background()
	r := pubResult{writers: writers}
	c.waitStreamCaughtUp(b)
	m0, err := c.metrics(ctx)
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	info0, err := c.streamInfo(ctx)
	if err != nil {
		b.Fatal(err)
	}

	// Sample the publisher's lag twice a second while the writers run.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampled sync.WaitGroup
	sampled.Add(1)
	go func() {
		defer sampled.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
			if m, err := c.metrics(sampleCtx); err == nil {
				r.lagRevs = append(r.lagRevs, m["skiff_bus_publisher_lag_revisions"])
				r.lagSec = append(r.lagSec, m["skiff_bus_publisher_lag_seconds"])
			}
		}
	}()

	cpu0 := c.cpu()
	start := time.Now()
	puts, boundPuts, errs := pubWrite(ctx, etcds, pods, writers, start.Add(pubWriteFor))
	writeEnd := time.Now()
	mEnd, err := c.metrics(ctx)
	stopSampling()
	sampled.Wait()
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	r.elapsed = writeEnd.Sub(start)
	r.puts, r.putErrs = puts, errs
	r.expectedMsgs = r.puts + boundPuts
	r.publishedMsgs = int64(mEnd["skiff_bus_published_messages_total"] - m0["skiff_bus_published_messages_total"])
	r.finalRevs, r.finalSec = mEnd["skiff_bus_publisher_lag_revisions"], mEnd["skiff_bus_publisher_lag_seconds"]
	caughtUp, err := c.streamCaughtUp(ctx, 5*time.Minute)
	if err != nil {
		r.err = err
		b.Errorf("%d writers: %v", writers, err)
	} else {
		r.catchUp = caughtUp.Sub(writeEnd)
	}
	r.cpu = c.cpu().sub(cpu0)
	if info, err := c.streamInfo(ctx); err == nil {
		r.streamMsgs = info.State.LastSeq - info0.State.LastSeq
	}
	r.streamExpected = r.expectedMsgs
	if r.putErrs > 0 {
		b.Errorf("%d writers: %d puts failed", writers, r.putErrs)
	}
	if r.err == nil && int64(r.streamMsgs) != r.streamExpected {
		b.Errorf("%d writers: the stream gained %d messages for %d puts that call for %d", writers, r.streamMsgs, r.puts, r.streamExpected)
	}
	fmt.Printf("  %2d writers: %d puts in %s (%.0f/s), published %d of their %d messages meanwhile, final lag %.0f revisions / %.3fs, caught up %s later\n",
		writers, r.puts, r.elapsed.Round(time.Millisecond), float64(r.puts)/r.elapsed.Seconds(), r.publishedMsgs, r.expectedMsgs,
		r.finalRevs, r.finalSec, r.catchUp.Round(time.Millisecond))
	return r
}

func pubReport(b *testing.B, results []pubResult, drain pubDrain) {
	where := "in the test process, sharing its CPU with the writers"
	if benchAPIServerProcess() {
		where = "as its own process"
	}
	fmt.Printf("\nPublisher throughput: pods updated straight in etcd (%d pods, half bound to %d nodes: 1.5 messages per put), %s per level, apiserver %s:\n",
		pubPods, pubNodes, pubWriteFor, where)
	fmt.Printf("%-7s | %10s %12s %12s %8s | %9s %9s %9s %9s | %10s %9s | %8s %8s %9s %9s\n", "writers", "etcd put/s", "msgs due/s",
		"published/s", "ratio", "lag p50", "lag max", "lag p50", "lag max", "final lag", "catch-up", "etcd CPU", "NATS CPU", "apiserver", "test proc")
	fmt.Printf("%-7s | %10s %12s %12s %8s | %9s %9s %9s %9s | %10s %9s |\n", "", "", "", "", "", "revs", "revs", "s", "s", "revs/s", "")
	ratio := func(r pubResult) float64 {
		if r.expectedMsgs == 0 {
			return 0
		}
		return float64(r.publishedMsgs) / float64(r.expectedMsgs)
	}
	pct := func(v []float64, p float64) float64 {
		if len(v) == 0 {
			return 0
		}
		s := slices.Clone(v)
		slices.Sort(s)
		return s[min(int(float64(len(s))*p), len(s)-1)]
	}
	for _, r := range results {
		sec := r.elapsed.Seconds()
		api := "in proc"
		if r.cpu.api >= 0 {
			api = benchCPU(r.cpu.api)
		}
		fmt.Printf("%-7d | %10.0f %12.0f %12.0f %7.2fx | %9.0f %9.0f %9.3f %9.3f | %4.0f/%.3fs %9s | %8s %8s %9s %9s\n", r.writers,
			float64(r.puts)/sec, float64(r.expectedMsgs)/sec, float64(r.publishedMsgs)/sec, ratio(r),
			pct(r.lagRevs, 0.5), pct(r.lagRevs, 1), pct(r.lagSec, 0.5), pct(r.lagSec, 1),
			r.finalRevs, r.finalSec, r.catchUp.Round(time.Millisecond),
			benchCPU(r.cpu.etcd), benchCPU(r.cpu.nats), api, benchCPU(r.cpu.self))
	}
	fmt.Println("  msgs due = what the puts call for (a bound pod's change is published twice); published = what the stream")
	fmt.Println("  acknowledged during the writes (skiff_bus_published_messages_total); ratio = published / due.")
	fmt.Println("  lag = skiff_bus_publisher_lag_revisions and _seconds, sampled every 500 ms while writing; final = when the")
	fmt.Println("  writes stopped; catch-up = from then until the stream held the last write. CPU: from the first write until")
	fmt.Println("  caught up (test proc = the writers, and the apiserver unless it runs as its own process).")
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Printf("\nBacklog: the apiserver stopped while %d writers put %d pods (%.0f puts/s, %.0f msgs/s due); restarted, its publisher\n",
		drain.writers, drain.puts, drain.putRate, drain.putRate*float64(drain.msgs)/float64(max(drain.puts, 1)))
	apiCPU := "test proc (apiserver) " + benchCPU(drain.cpu.self)
	if drain.cpu.api >= 0 {
		apiCPU = "apiserver " + benchCPU(drain.cpu.api)
	}
	fmt.Printf("  published the %d messages in %s: %.0f msgs/s (first message %s after the restart); CPU meanwhile: etcd %s, NATS %s, %s\n",
		drain.published, drain.drain.Round(time.Millisecond), drain.rate(), drain.startDelay.Round(time.Millisecond),
		benchCPU(drain.cpu.etcd), benchCPU(drain.cpu.nats), apiCPU)
	fmt.Printf("  baseline: a bare etcd watch with previous values read the same %d changes in %s (%.0f changes/s, %.0f msgs/s as published)\n",
		drain.bareEvents, drain.bareWatch.Round(time.Millisecond), float64(drain.bareEvents)/drain.bareWatch.Seconds(), drain.bareRate())
	for _, r := range results {
		sec := r.elapsed.Seconds()
		fmt.Printf("goal: messages the publisher had acknowledged by the end of the writes / messages due, %d writers, >= 0.95x: %.2fx (%.0f of %.0f msgs/s at %.0f etcd puts/s) %s\n",
			r.writers, ratio(r), float64(r.publishedMsgs)/sec, float64(r.expectedMsgs)/sec, float64(r.puts)/sec,
			verdict(r.err == nil && ratio(r) >= 0.95))
		endLag := max(time.Duration(r.finalSec*float64(time.Second)), r.catchUp)
		fmt.Printf("goal: publisher lag when the writes stopped, %d writers, <= 1s: %.3fs (metric %.3fs / %.0f revisions, stream caught up after %s; max while writing %.3fs) %s\n",
			r.writers, endLag.Seconds(), r.finalSec, r.finalRevs, r.catchUp.Round(time.Millisecond), pct(r.lagSec, 1),
			verdict(r.err == nil && endLag <= time.Second))
		name := strconv.Itoa(r.writers) + "w"
		b.ReportMetric(float64(r.puts)/sec, name+"-etcd-puts/s")
		b.ReportMetric(float64(r.publishedMsgs)/sec, name+"-published-msgs/s")
		b.ReportMetric(ratio(r), name+"-published/due")
		b.ReportMetric(r.finalSec, name+"-final-lag-s")
	}
	fmt.Printf("goal: publisher backlog drain / a bare etcd watch reading the same backlog (in messages/s) >= 0.80x: %.2fx (%.0f vs %.0f msgs/s; etcd took %.0f msgs/s of writes) %s\n",
		drain.rate()/max(drain.bareRate(), 1), drain.rate(), drain.bareRate(), drain.putRate*float64(drain.msgs)/float64(max(drain.puts, 1)),
		verdict(drain.err == nil && drain.rate() >= 0.8*drain.bareRate()))
	b.ReportMetric(drain.rate(), "drain-msgs/s")
}

// oneReaderRounds is how many times BenchmarkBusOneReader repeats its measurement.
const oneReaderRounds = 3

// oneReaderRound is one round: the same writes seen by the bus and by etcd.
type oneReaderRound struct {
	writes, writeErrs int
	writeRate         float64
	bus, watch, extra []int64 // latencies (extra: bus minus watch, per write), sorted
	err               error
}

// BenchmarkBusOneReader measures what the bus adds to a reader's latency: one pod informer on
// the bus and one direct etcd watch run side by side, on the same writes at the same moment
// (fanoutWrites updates through the API at fanoutRate), so that a busy machine slows both
// alike. The difference is the bus's path: the apiserver's etcd watch, the JetStream publish,
// the consumer and the informer. It repeats oneReaderRounds times.
//
//	go test ./test/e2e/ -run '^$' -bench BusOneReader -benchtime 1x
func BenchmarkBusOneReader(b *testing.B) {
	if testing.Short() {
		b.Skip("runs etcd and NATS processes")
	}
	c := startBenchCluster(b)
	env := newFanoutEnv(b, c)
	pods, _ := scheme.Default().ForName("pods")
	js := c.newJetStream(b)
	etcd := c.newEtcdClients(b, 1)[0]
	logger := benchLogger()

	var rounds []oneReaderRound
	for i := range oneReaderRounds {
		runID := "one-" + strconv.Itoa(i)
		newSink := func() *fanoutSink {
			return &fanoutSink{run: runID, warm: runID + "-warm", lat: make([]int64, fanoutWrites),
				byWrite: make([]int64, fanoutWrites)}
		}
		busSink, watchSink := newSink(), newSink()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		inf := informer.New(informer.Config{Client: env.clients[0], JetStream: js, Kind: pods, Logger: logger})
		inf.AddEventHandler(informer.HandlerFuncs{UpdateFunc: func(_, obj scheme.Object) { busSink.observe(obj) }})
		wg.Add(2)
		go func() { defer wg.Done(); _ = inf.Run(ctx) }()
		var created sync.WaitGroup
		created.Add(1)
		go func() { defer wg.Done(); watchPods(ctx, etcd, watchSink, created.Done) }()
		syncCtx, cancelSync := context.WithTimeout(ctx, time.Minute)
		synced := informer.WaitForCacheSync(syncCtx, inf)
		cancelSync()
		created.Wait()
		r := oneReaderRound{}
		if !synced {
			r.err = errors.New("the informer did not sync within a minute")
		} else {
			r.err = env.warmUp(ctx, runID, []*fanoutSink{busSink, watchSink})
		}
		if r.err == nil {
			c.waitStreamCaughtUp(b)
			t0, acked, errs, end := env.write(ctx, runID)
			r.writes, r.writeErrs = acked, errs
			r.writeRate = float64(acked+errs) / end.Sub(t0).Seconds()
			progressAt, last := time.Now(), int64(-1)
			for {
				n := busSink.n.Load() + watchSink.n.Load()
				if busSink.n.Load() >= int64(acked) && watchSink.n.Load() >= int64(acked) {
					break
				}
				if n != last {
					progressAt, last = time.Now(), n
				}
				if time.Since(progressAt) > fanoutStall {
					r.err = fmt.Errorf("bus delivered %d, watch %d of %d", busSink.n.Load(), watchSink.n.Load(), acked)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		cancel()
		wg.Wait()
		if r.err != nil {
			b.Errorf("round %d: %v", i+1, r.err)
		}
		for k := range fanoutWrites {
			bl, wl := busSink.byWrite[k], watchSink.byWrite[k]
			if bl > 0 && wl > 0 {
				r.bus, r.watch, r.extra = append(r.bus, bl), append(r.watch, wl), append(r.extra, bl-wl)
			}
		}
		slices.Sort(r.bus)
		slices.Sort(r.watch)
		slices.Sort(r.extra)
		rounds = append(rounds, r)
		fmt.Printf("  round %d: %d writes at %.0f/s; bus p50 %s p99 %s, etcd watch p50 %s p99 %s; bus minus watch per write p50 %s p99 %s\n",
			i+1, r.writes, r.writeRate, benchDur(benchPercentile(r.bus, 0.5)), benchDur(benchPercentile(r.bus, 0.99)),
			benchDur(benchPercentile(r.watch, 0.5)), benchDur(benchPercentile(r.watch, 0.99)),
			signedDur(benchPercentile(r.extra, 0.5)), signedDur(benchPercentile(r.extra, 0.99)))
	}

	var bus, watch, extra []int64
	ok := true
	for _, r := range rounds {
		bus, watch, extra = append(bus, r.bus...), append(watch, r.watch...), append(extra, r.extra...)
		ok = ok && r.err == nil && r.writeErrs == 0
	}
	slices.Sort(bus)
	slices.Sort(watch)
	slices.Sort(extra)
	bp50, bp99 := benchPercentile(bus, 0.5), benchPercentile(bus, 0.99)
	wp50, wp99 := benchPercentile(watch, 0.5), benchPercentile(watch, 0.99)
	where := "in the test process"
	if benchAPIServerProcess() {
		where = "as its own process"
	}
	fmt.Printf("\nOne reader, %d rounds of %d pod updates at %d/s through the API; a bus informer and a direct etcd watch side by side (apiserver %s):\n",
		oneReaderRounds, fanoutWrites, fanoutRate, where)
	fmt.Printf("  %-22s %9s %9s %9s\n", "", "p50", "p99", "max")
	fmt.Printf("  %-22s %9s %9s %9s\n", "etcd watch (baseline)", benchDur(wp50), benchDur(wp99), benchDur(benchPercentile(watch, 1)))
	fmt.Printf("  %-22s %9s %9s %9s\n", "bus", benchDur(bp50), benchDur(bp99), benchDur(benchPercentile(bus, 1)))
	fmt.Printf("  %-22s %9s %9s %9s\n", "bus minus watch", signedDur(benchPercentile(extra, 0.5)), signedDur(benchPercentile(extra, 0.99)),
		signedDur(benchPercentile(extra, 1)))
	fmt.Println("  latency = from sending the update to the reader's handler; the writes' own latency is in both.")
	ratio := func(a, b time.Duration) float64 {
		if b <= 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	verdict := "NOT met"
	if ok && wp99 > 0 && bp99 <= 2*wp99 {
		verdict = "met"
	}
	fmt.Printf("goal: bus p99 / direct etcd watch p99, 1 reader at %d writes/s, <= 2.00x: %.2fx (%s vs %s; p50 %.2fx, %s vs %s) %s\n",
		fanoutRate, ratio(bp99, wp99), benchDur(bp99), benchDur(wp99), ratio(bp50, wp50), benchDur(bp50), benchDur(wp50), verdict)
	b.ReportMetric(float64(bp50)/1e6, "bus-p50-ms")
	b.ReportMetric(float64(bp99)/1e6, "bus-p99-ms")
	b.ReportMetric(float64(wp50)/1e6, "watch-p50-ms")
	b.ReportMetric(float64(wp99)/1e6, "watch-p99-ms")
	b.ReportMetric(ratio(bp99, wp99), "p99-ratio")
}

// signedDur is benchDur for a difference that may be negative.
func signedDur(d time.Duration) string {
	if d < 0 {
		return "-" + benchDur(-d)
	}
	if d == 0 {
		return "0"
	}
	return benchDur(d)
}
