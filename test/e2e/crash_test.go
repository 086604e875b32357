package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/test/e2e/internal/proc"
)

// The chaos: how many times the apiserver is killed with SIGKILL while writes stream in, and
// how many writers there are. Half the kills land right after a restart (while the killed
// replica's lease still blocks the publisher election), half while the new publisher is
// catching up on the backlog, i.e. in the middle of publishing.
const (
	apiserverKills   = 8
	podWriters       = 4
	podsPerWriter    = 4
	minOpsPerPod     = 150 // per writer; writers keep going until the chaos is over
	namespaceWriters = 2
)

// podPrefix is where the apiserver stores pods in etcd.
const podPrefix = registry.DefaultPrefix + "/pods/"

// TestCrashSafety runs etcd, NATS and the apiserver as separate processes. Under concurrent
// writes it kills the apiserver with SIGKILL several times at random moments and restarts
// NATS once, then checks that an informer reported every committed revision of every pod
// exactly once and in order, by comparing with etcd's own history. Then it makes a second
// informer start from a revision older than the stream holds and checks that it relists and
// ends equal to a fresh list.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and kills them for about half a minute")
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("SKIFF_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (SKIFF_CRASH_SEED=%d replays the same delays and operation choices; timing still varies)", seed, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pods, _ := scheme.Default().ForName("pods")
	namespaces, _ := scheme.Default().ForName("namespaces")
	logger := fileLogger(t, filepath.Join(c.dir, "informer.log"))

	// Informer A follows all pods from before the first write, through all the chaos.
	cl := c.newClient(t)
	recA := &recorder{}
	infA := informer.New(informer.Config{Client: cl, JetStream: c.newJetStream(t), Kind: pods, Logger: logger})
	infA.AddEventHandler(recA.handlers())
	ctxA, stopA := context.WithCancel(ctx)
	doneA := make(chan struct{}) // closed when Run returns
	go func() { defer close(doneA); _ = infA.Run(ctxA) }()
	defer func() { stopA(); <-doneA }()
	if !informer.WaitForCacheSync(ctx, infA) {
		t.Fatal("informer A did not sync")
	}
	startRev := infA.LastRevision()
	if n := infA.Store().Len(); n != 0 {
		t.Fatalf("informer A starts with %d pods; want none", n)
	}

	// Writers and chaos, concurrently.
	var stats writeStats
	stopWriters := make(chan struct{})
	var writers sync.WaitGroup
	for w := range podWriters {
		pw := &podWriter{id: w, c: c.newClient(t), pods: pods, stats: &stats, failed: t.Errorf,
			rng: rand.New(rand.NewPCG(uint64(seed), uint64(w+1)))}
		for p := range podsPerWriter {
			pw.names = append(pw.names, fmt.Sprintf("w%d-p%d", w, p))
		}
		writers.Add(1)
		go func() { defer writers.Done(); pw.run(ctx, minOpsPerPod, stopWriters) }()
	}
	var nsws []*namespaceWriter
	for w := range namespaceWriters {
		nsw := &namespaceWriter{id: w, c: c.newClient(t), etcd: c.Etcd, pods: pods, nsKind: namespaces, stats: &stats, failed: t.Errorf}
		nsws = append(nsws, nsw)
		writers.Add(1)
		go func() { defer writers.Done(); nsw.run(ctx, stopWriters) }()
	}

	began := time.Now()
	natsRestarts, err := chaos(ctx, t, c, rng)
	close(stopWriters)
	writers.Wait()
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	nsRounds := 0
	for _, w := range nsws {
		nsRounds += w.rounds
	}
	t.Logf("chaos over after %v: %d apiserver kills, %d NATS restarts, %d writes acknowledged, %d calls failed while the apiserver was down, %d namespaces deleted",
		time.Since(began).Round(time.Millisecond), c.apiserver.Kills(), natsRestarts, stats.acked.Load(), stats.transient.Load(), nsRounds)

	// The last pod change: everything up to it must reach the informer.
	sentinel := createPod(ctx, t, cl, "default", "zz-sentinel")
	untilRev := rv(sentinel)
	waitFor(ctx, t, 60*time.Second, "informer A to reach the last write", func() bool {
		return infA.LastRevision() >= untilRev
	})

	// The truth: etcd's history of pods since the informer's list.
	truth, err := etcdHistory(ctx, c.Etcd, podPrefix, startRev+1, untilRev)
	if err != nil {
		t.Fatal(err)
	}
	got := compare(truth, recA.snapshot())
	report(t, "informer", got)

	// The stream itself, read raw: the informer skips what it has seen, which could hide a
	// duplicate the publisher wrote after a crash.
	streamChanges, err := readStream(ctx, c, pods, startRev, untilRev)
	if err != nil {
		t.Fatal(err)
	}
	report(t, "stream", compare(truth, streamChanges))

	if n := infA.Relists(); n != 0 {
		t.Errorf("informer A relisted %d times during the chaos; the stream keeps a day of changes, so it never needed to", n)
	}
	assertCacheIsList(ctx, t, "informer A", infA, cl, pods)
	stopA()
	<-doneA

	// Forced relist: informer B lists, then is cut off from NATS before it subscribes. Writes
	// go on, the stream loses them (a purge stands for retention running out), and then B
	// reaches NATS: its start point is older than what the stream holds.
	relists := forcedRelist(ctx, t, c, cl, pods, logger, rng)

	summary := fmt.Sprintf("crash test: %d apiserver kills, %d NATS restart, %s acknowledged writes, %s events checked over %s objects: %d lost, %d duplicated, %d reordered, %d relist",
		c.apiserver.Kills(), natsRestarts, commas(int(stats.acked.Load())), commas(got.events), commas(got.objects),
		got.lost, got.duplicated, got.reordered, relists)
	t.Log(summary)
	// Also on stdout, where CI output shows it with -v and in a failing run.
	fmt.Println(summary)
	if path := os.Getenv("SKIFF_E2E_SUMMARY"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintln(f, summary)
			f.Close()
		}
	}
}

// chaos kills the apiserver apiserverKills times, restarting it each time, and restarts
// NATS once on the way. It returns how many times NATS was restarted.
//
// Odd kills come at a random moment 100-600ms after the restart, while the killed replica's
// lease (5s) still blocks the publisher election. Even kills, and the NATS restart, wait for
// the new publisher to be elected and to be seen in the middle of catching up on the backlog
// (the stream growing, still behind etcd), then strike at once: a publisher interrupted with
// messages in flight, part of a batch stored, must resume exactly where the stream stopped.
func chaos(ctx context.Context, t *testing.T, c *cluster, rng *rand.Rand) (int, error) {
	natsRestarts := 0
	js := c.newJetStream(t)
	midPublish := func(what string) {
		if !c.waitPublisherElected(ctx, 12*time.Second) {
			t.Logf("%s: the publisher was not elected within 12s; striking anyway", what)
			return
		}
		if !catchingUp(ctx, c, js, 3*time.Second) {
			t.Logf("%s: did not see the publisher catching up; striking anyway", what)
		}
	}
	for i := 1; i <= apiserverKills; i++ {
		what := fmt.Sprintf("kill %d of the apiserver", i)
		if i%2 == 1 {
			time.Sleep(time.Duration(100+rng.IntN(500)) * time.Millisecond)
		} else {
			midPublish(what)
		}
		c.apiserver.Kill()
		t.Logf("%s: %s", what, publisherState(ctx, c, js))
		if err := c.startAPIServer(ctx); err != nil {
			return natsRestarts, fmt.Errorf("restart after kill %d: %w", i, err)
		}
		if i == apiserverKills/2 {
			// NATS dies mid-stream too: the publisher and the informer must both pick up.
			midPublish("NATS restart")
			c.nats.Kill()
			if err := c.startNATS(ctx); err != nil {
				return natsRestarts, fmt.Errorf("restart NATS: %w", err)
			}
			t.Logf("NATS restart: %s", publisherState(ctx, c, js))
			natsRestarts++
		}
	}
	return natsRestarts, nil
}

// catchingUp waits (up to timeout) until the stream is seen growing while it still ends
// before etcd's revision of when the wait began: the publisher is sending a batch of its
// backlog right now.
func catchingUp(ctx context.Context, c *cluster, js jetstream.JetStream, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := c.Etcd.Get(ctx, podPrefix, clientv3.WithCountOnly())
	if err != nil {
		return false
	}
	behind := resp.Header.Revision
	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		return false
	}
	var prev uint64
	for ctx.Err() == nil {
		info, err := stream.Info(ctx)
		if err != nil {
			return false
		}
		if prev != 0 && info.State.LastSeq > prev {
			return lastStreamRevision(ctx, stream) < behind
		}
		prev = info.State.LastSeq
	}
	return false
}

// publisherState describes where the publisher is: whether this apiserver run won the
// election, and how far etcd is ahead of the stream (what a kill interrupted).
func publisherState(ctx context.Context, c *cluster, js jetstream.JetStream) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	elected := c.apiserver.LogContains(electedLine) > c.electedMark
	resp, err := c.Etcd.Get(ctx, podPrefix, clientv3.WithCountOnly())
	if err != nil {
		return fmt.Sprintf("publisher elected: %v", elected)
	}
	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		return fmt.Sprintf("publisher elected: %v", elected)
	}
	published := lastStreamRevision(ctx, stream)
	return fmt.Sprintf("publisher elected: %v, etcd at revision %d, stream at %d", elected, resp.Header.Revision, published)
}

// readStream reads the pod changes the stream holds after revision after, up to revision
// until, as bus consumers receive them.
func readStream(ctx context.Context, c *cluster, pods *scheme.Kind, after, until int64) ([]change, error) {
	nc, err := nats.Connect(c.natsURL)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []change
	errDone := errors.New("done")
	err = bus.NewSubscription(js, scheme.Default()).Run(ctx, []string{bus.KindFilter(pods, "")}, after,
		func(ev bus.Event) error {
			out = append(out, change{key: informer.KeyOf(ev.Object), typ: string(ev.Type), rev: ev.Revision})
			if ev.Revision >= until {
				return errDone
			}
			return nil
		})
	if !errors.Is(err, errDone) {
		return nil, fmt.Errorf("reading the stream after %d: %v (read %d changes)", after, err, len(out))
	}
	return out, nil
}

// forcedRelist starts informer B, lets it list, cuts it off from NATS through a proxy, makes
// the stream lose the changes after B's list revision, and reconnects it. B must relist,
// tell its handlers what changed, follow the bus again, and end equal to a fresh list. It
// returns B's relist count.
func forcedRelist(ctx context.Context, t *testing.T, c *cluster, cl client.Interface, pods *scheme.Kind, logger *slog.Logger, rng *rand.Rand) int {
	t.Helper()
	proxy, err := proc.NewProxy(natsHostPort(c), true)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	// Closed before B exists: its first connection attempt fails, and with RetryOnFailedConnect
	// it keeps trying in the background; every JetStream call fails until the proxy opens.
	proxy.SetOpen(false)
	nc, err := nats.Connect("nats://"+proxy.Addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	recB := &recorder{}
	infB := informer.New(informer.Config{Client: cl, JetStream: js, Kind: pods, Logger: logger.With("name", "B")})
	infB.AddEventHandler(recB.handlers())
	ctxB, stopB := context.WithCancel(ctx)
	doneB := make(chan struct{})
	go func() { defer close(doneB); _ = infB.Run(ctxB) }()
	defer func() { stopB(); <-doneB }()
	if !informer.WaitForCacheSync(ctx, infB) {
		t.Fatal("informer B did not sync")
	}
	listRev := infB.LastRevision()

	// Changes B will never see on the bus: deletes, updates and creates.
	w := &podWriter{id: 7, c: cl, pods: pods, rng: rng, stats: &writeStats{}, failed: t.Errorf}
	for _, obj := range infB.Store().List() {
		if obj.GetMetadata().GetNamespace() == "default" {
			w.names = append(w.names, obj.GetMetadata().GetName())
		}
	}
	for i := range 10 {
		w.names = append(w.names, "relist-"+strconv.Itoa(i))
	}
	for range 120 {
		for !w.op(ctx, w.names[rng.IntN(len(w.names))]) && ctx.Err() == nil {
		}
	}
	marker := createPod(ctx, t, cl, "default", "relist-marker")

	// Wait until the publisher has put everything on the stream, then drop it all.
	direct := c.newJetStream(t)
	stream, err := direct.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, 30*time.Second, "the publisher to publish the relist writes", func() bool {
		return lastStreamRevision(ctx, stream) >= rv(marker)
	})
	if err := stream.Purge(ctx); err != nil {
		t.Fatalf("purge: %v", err)
	}
	if got := infB.LastRevision(); got != listRev {
		t.Fatalf("informer B moved from %d to %d while cut off from NATS", listRev, got)
	}

	proxy.SetOpen(true)
	waitFor(ctx, t, 60*time.Second, "informer B to relist", func() bool { return infB.Relists() > 0 })
	// After the relist B follows the bus again: a change made now reaches it.
	after := createPod(ctx, t, cl, "default", "after-relist")
	waitFor(ctx, t, 30*time.Second, "informer B to see a change after its relist", func() bool {
		obj, ok := infB.Store().Get("default", "after-relist")
		return ok && rv(obj) == rv(after)
	})
	assertCacheIsList(ctx, t, "informer B", infB, cl, pods)

	// Its handlers were told everything: replaying what they heard gives the same pods.
	heard := map[string]int64{}
	for _, ch := range recB.snapshot() {
		if ch.typ == "DELETED" {
			delete(heard, ch.key)
		} else {
			heard[ch.key] = ch.rev
		}
	}
	want := listed(ctx, t, cl, pods)
	if d := diffVersions(want, heard); d != "" {
		t.Errorf("informer B's handlers, replayed, disagree with a fresh list:\n%s", d)
	}
	t.Logf("informer B: listed at %d, cut off, %d writes lost from the stream, relisted %d time(s), %d handler calls, %d pods at the end",
		listRev, w.stats.acked.Load(), infB.Relists(), recB.len(), len(want))
	return infB.Relists()
}

func natsHostPort(c *cluster) string { return c.natsURL[len("nats://"):] }

// lastStreamRevision is the revision of the stream's last message (0 if none).
func lastStreamRevision(ctx context.Context, stream jetstream.Stream) int64 {
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return 0
	}
	m, err := stream.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return 0
	}
	r, _ := strconv.ParseInt(m.Header.Get(bus.HeaderRevision), 10, 64)
	return r
}

// report logs a verdict and fails the test unless it is clean.
func report(t *testing.T, what string, v verdict) {
	t.Helper()
	t.Logf("%s vs etcd: %d changes of %d objects; %d lost, %d duplicated, %d reordered, %d not committed",
		what, v.events, v.objects, v.lost, v.duplicated, v.reordered, v.phantom)
	if v.ok() {
		return
	}
	shown := v.mismatches
	if len(shown) > 10 {
		shown = shown[:10]
	}
	t.Errorf("%s disagrees with etcd's history on %d objects (%d lost, %d duplicated, %d reordered, %d not committed); first ones:",
		what, len(v.mismatches), v.lost, v.duplicated, v.reordered, v.phantom)
	for _, m := range shown {
		t.Errorf("  %s", m)
	}
}

// listed is a fresh list of every pod: key → resourceVersion.
func listed(ctx context.Context, t *testing.T, cl client.Interface, pods *scheme.Kind) map[string]int64 {
	t.Helper()
	var list *client.List
	err := retryCall(ctx, func(ctx context.Context) error {
		var err error
		list, err = client.ListAll(ctx, cl, pods, "", client.ListOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	out := map[string]int64{}
	for _, obj := range list.Items {
		out[informer.KeyOf(obj)] = rv(obj)
	}
	return out
}

// assertCacheIsList checks that the informer's cache holds exactly the pods of a fresh list,
// at the same resourceVersions.
func assertCacheIsList(ctx context.Context, t *testing.T, name string, inf *informer.Informer, cl client.Interface, pods *scheme.Kind) {
	t.Helper()
	cached := map[string]int64{}
	for _, obj := range inf.Store().List() {
		cached[informer.KeyOf(obj)] = rv(obj)
	}
	if d := diffVersions(listed(ctx, t, cl, pods), cached); d != "" {
		t.Errorf("%s's cache differs from a fresh list:\n%s", name, d)
	}
}

// diffVersions describes how got differs from want (key → resourceVersion); "" if equal.
func diffVersions(want, got map[string]int64) string {
	var out string
	n := 0
	note := func(s string) {
		if n < 20 {
			out += "\t" + s + "\n"
		}
		n++
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			note(fmt.Sprintf("%s@%d missing", k, v))
		} else if g != v {
			note(fmt.Sprintf("%s at %d, want %d", k, g, v))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			note(fmt.Sprintf("%s@%d should not be there", k, g))
		}
	}
	if n > 20 {
		out += fmt.Sprintf("\t... and %d more\n", n-20)
	}
	return out
}

// createPod creates a pod, retrying while the apiserver does not answer.
func createPod(ctx context.Context, t *testing.T, cl client.Interface, ns, name string) scheme.Object {
	t.Helper()
	var obj scheme.Object
	err := retryCall(ctx, func(ctx context.Context) error {
		var err error
		obj, err = cl.Create(ctx, testPod(ns, name, 0))
		return err
	})
	if err != nil {
		t.Fatalf("create %s/%s: %v", ns, name, err)
	}
	return obj
}

// retryCall repeats call while the apiserver is unreachable (up to 30s).
func retryCall(ctx context.Context, call func(context.Context) error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := call(cctx)
		cancel()
		if err == nil || answered(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func rv(obj scheme.Object) int64 {
	r, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	return r
}

// waitFor polls cond every 20ms and fails the test if it is not true within timeout.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fileLogger logs to path (printed on failure) rather than to the test output.
func fileLogger(t *testing.T, path string) *slog.Logger {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(path)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("----- end of the informers' log (%s) -----\n%s", path, b)
		}
		f.Close()
	})
	return slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
