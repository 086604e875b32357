package bus_test

// Tests of the shared live feed (bus.Live) against a real apiserver, publisher, etcd and NATS.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
)

// liveEnv is an apiserver (with its publisher) and a Live reading its bus.
type liveEnv struct {
	t    *testing.T
	env  *testenv.Env
	js   jetstream.JetStream
	live *bus.Live
	pods *scheme.Kind
}

func newLiveEnv(t *testing.T, opts ...bus.LiveOption) *liveEnv {
	t.Helper()
	env := testenv.Start(t)
	js := env.JetStream(t)
	pods, _ := scheme.Default().ForName("pods")
	return &liveEnv{t: t, env: env, js: js, live: bus.NewLive(js, scheme.Default(), opts...), pods: pods}
}

// write creates pod name, or updates it if it exists, and returns the revision.
func (e *liveEnv) write(name string) int64 {
	e.t.Helper()
	ctx := context.Background()
	obj, err := e.env.Client.Get(ctx, e.pods, "default", name)
	if err == nil {
		md := obj.GetMetadata()
		if md.Annotations == nil {
			md.Annotations = map[string]string{}
		}
		md.Annotations["n"] = strconv.FormatInt(time.Now().UnixNano(), 10)
		obj, err = e.env.Client.Update(ctx, obj)
	} else {
		obj, err = e.env.Client.Create(ctx, pod(name))
	}
	if err != nil {
		e.t.Fatalf("write %s: %v", name, err)
	}
	rev, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	return rev
}

// revision is the API's current revision (a list's).
func (e *liveEnv) revision() int64 {
	e.t.Helper()
	l, err := client.ListAll(context.Background(), e.env.Client, e.pods, "", client.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	rev, _ := strconv.ParseInt(l.ResourceVersion, 10, 64)
	return rev
}

// liveReader records what one reader of the Live received.
type liveReader struct {
	mu     sync.Mutex
	events []bus.Event
	gate   chan struct{} // if not nil, the handler waits for it to close before its first event
	done   chan struct{}
	err    error
}

func (e *liveEnv) reader(filter string, after int64, gate chan struct{}) *liveReader {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &liveReader{gate: gate, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = e.live.Run(ctx, []string{filter}, after, func(ev bus.Event) error {
			if r.gate != nil {
				<-r.gate
			}
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
			return nil
		})
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			e.t.Error("live reader did not stop")
		}
	})
	return r
}

// revisions is what the reader received: the revisions of events on pods in names (all if
// names is empty).
func (r *liveReader) got() []bus.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Event(nil), r.events...)
}

// waitFor waits until the reader has received an event at revision rev or later.
func (r *liveReader) waitFor(t *testing.T, rev int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		evs := r.got()
		if len(evs) > 0 && evs[len(evs)-1].Revision >= rev {
			return
		}
		select {
		case <-r.done:
			t.Fatalf("reader ended with %v before revision %d", r.err, rev)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("reader did not reach revision %d in 20s; got %s", rev, revs(r.got()))
}

func revs(evs []bus.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		fmt.Fprintf(&b, "%d:%s ", ev.Revision, ev.Object.GetMetadata().GetName())
	}
	return b.String()
}

// assertExactly checks that the reader received exactly want (revisions), in order.
func assertExactly(t *testing.T, name string, got []bus.Event, want []int64) {
	t.Helper()
	ok := len(got) == len(want)
	for i := range min(len(got), len(want)) {
		ok = ok && got[i].Revision == want[i]
	}
	if !ok {
		t.Errorf("%s received %s; want revisions %v", name, revs(got), want)
	}
}

// Every reader of a family shares one feed: one NATS subscription and one decode per
// message, however many readers; each reader still gets every change, in order, once.
func TestLiveReadersShareOneFeed(t *testing.T) {
	e := newLiveEnv(t)
	start := e.write("warm")
	filter := bus.KindFilter(e.pods, "")
	readers := make([]*liveReader, 5)
	for i := range readers {
		readers[i] = e.reader(filter, start-1, nil)
	}
	for _, r := range readers {
		r.waitFor(t, start)
	}
	// The readers may have had start from the feed's first read of the stream: count from
	// when the feed takes changes live (its start-up check then done, see follow0).
	warm := 1
	for deadline := time.Now().Add(20 * time.Second); e.live.Stats().Decodes == 0; warm++ {
		if time.Now().After(deadline) {
			t.Fatal("the feed took no change live in 20 s")
		}
		rev := e.write("warm")
		for _, r := range readers {
			r.waitFor(t, rev)
		}
	}
	before := e.live.Stats()
	var want []int64
	for i := range 20 {
		want = append(want, e.write("p-"+strconv.Itoa(i%4)))
	}
	for i, r := range readers {
		r.waitFor(t, want[len(want)-1])
		time.Sleep(50 * time.Millisecond) // anything more (a duplicate) shows too
		assertExactly(t, "reader "+strconv.Itoa(i), r.got()[warm:], want)
	}
	after := e.live.Stats()
	t.Logf("stats before the writes %+v, after %+v", before, after)
	if after.Feeds != 1 {
		t.Errorf("%d feeds for one family; want 1", after.Feeds)
	}
	// The family's subscription and the Live's one gap-marker subscription.
	if after.Subscriptions != 2 {
		t.Errorf("%d NATS subscriptions; want 2 (the family's, and compaction gap markers')", after.Subscriptions)
	}
	if d := after.Decodes - before.Decodes; d != int64(len(want)) {
		t.Errorf("%d live decodes for %d changes read by %d readers; want one per change", d, len(want), len(readers))
	}
	if r := after.Repairs - before.Repairs; r != 0 {
		t.Errorf("%d repairs while nothing was lost; want 0", r)
	}
}

// A live message that never arrives (NATS drops messages for a slow or disconnected
// subscriber) is noticed by the next one's link, and the feed fills the gap from the stream:
// the reader still gets every change, in order, once.
func TestLiveRepairsMissingLink(t *testing.T) {
	var dropping atomic.Bool
	e := newLiveEnv(t, bus.WithLiveDrop(func(m *nats.Msg) bool {
		return dropping.Load() && strings.HasSuffix(m.Subject, ".lost")
	}))
	start := e.write("warm")
	r := e.reader(bus.KindFilter(e.pods, ""), start-1, nil)
	r.waitFor(t, start)
	before := e.live.Stats()
	dropping.Store(true)
	want := []int64{e.write("a"), e.write("lost"), e.write("lost"), e.write("b"), e.write("a")}
	r.waitFor(t, want[len(want)-1])
	time.Sleep(50 * time.Millisecond)
	assertExactly(t, "reader", r.got()[1:], want)
	after := e.live.Stats()
	if after.Dropped-before.Dropped != 2 {
		t.Errorf("the hook dropped %d messages; want 2", after.Dropped-before.Dropped)
	}
	if after.Repairs == before.Repairs {
		t.Error("no repair, yet the reader got the dropped changes?")
	}
}

// A reader too slow for the ring, and one that joins from an older revision, catch up from
// the stream and then follow the feed: every change, in order, once, without holding up
// the other readers.
func TestLiveReadersBehindCatchUp(t *testing.T) {
	e := newLiveEnv(t, bus.WithRingSize(4))
	start := e.write("warm")
	filter := bus.KindFilter(e.pods, "")
	fast := e.reader(filter, start-1, nil)
	gate := make(chan struct{})
	slow := e.reader(filter, start-1, gate)
	fast.waitFor(t, start)
	var want []int64
	for i := range 20 {
		want = append(want, e.write("p-"+strconv.Itoa(i%3)))
	}
	// The fast reader is not held up by the slow one, which has not taken its first event.
	fast.waitFor(t, want[len(want)-1])
	close(gate)
	late := e.reader(filter, start, nil)
	more := e.write("p-0")
	all := append(append([]int64{start}, want...), more)
	slow.waitFor(t, more)
	late.waitFor(t, more)
	fast.waitFor(t, more)
	time.Sleep(50 * time.Millisecond)
	assertExactly(t, "fast reader", fast.got(), all)
	assertExactly(t, "slow reader", slow.got(), all)
	assertExactly(t, "late reader", late.got(), all[1:])
	if s := e.live.Stats(); s.Resyncs < 2 || s.Feeds != 1 {
		t.Errorf("stats %+v; want one feed and at least 2 resyncs from the stream (the slow and the late reader)", s)
	}
}

// A gap the stream cannot fill (retention dropped what the feed missed) ends every reader
// with ErrTooOld: the owner lists again.
func TestLiveUnrepairableGapIsTooOld(t *testing.T) {
	// x's live message is lost (by name: the feed may take it only after the purge).
	e := newLiveEnv(t, bus.WithLiveDrop(func(m *nats.Msg) bool { return strings.HasSuffix(m.Subject, ".x") }))
	start := e.write("warm")
	r := e.reader(bus.KindFilter(e.pods, ""), start-1, nil)
	r.waitFor(t, start)
	// Once a change has come live, the feed's first read of the stream is over: x can only
	// come live (and is lost).
	deadline := time.Now().Add(10 * time.Second)
	for e.live.Stats().Decodes == 0 {
		r.waitFor(t, e.write("warm"))
		if time.Now().After(deadline) {
			t.Fatal("no change came live in 10s")
		}
	}
	warm := len(r.got())
	e.write("x")
	// A change of another family after x keeps the stream from being empty after the purge
	// (an empty stream's coverage is the publisher's watermark, written up to 1 s late).
	ns, err := e.env.Client.Create(context.Background(), &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "keep"}})
	if err != nil {
		t.Fatal(err)
	}
	keepRev := ns.GetMetadata().GetResourceVersion()
	stream, err := e.js.Stream(context.Background(), bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	var keepSeq uint64
	for {
		m, err := stream.GetLastMsgForSubject(context.Background(), bus.AllSubjects())
		if err == nil && m.Header.Get(bus.HeaderRevision) == keepRev {
			keepSeq = m.Sequence
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("namespace not published in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Retention drops everything before it, x included.
	if err := stream.Purge(context.Background(), jetstream.WithPurgeSequence(keepSeq)); err != nil {
		t.Fatal(err)
	}
	e.write("y")
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("reader still running; got %s", revs(r.got()))
	}
	if !errors.Is(r.err, bus.ErrTooOld) {
		t.Errorf("reader ended with %v; want ErrTooOld", r.err)
	}
	if got := r.got(); len(got) != warm {
		t.Errorf("reader got %s; want only the warm-up writes (x and y come from a list)", revs(got))
	}
}

// A live message the stream does not hold yet when the feed looks for it (storing lags
// delivery under load, or a deposed publisher's message is refused until the leader
// publishes the same change) is fetched once the stream has it, without waiting for another
// message or the idle check.
func TestLiveAwaitsMessageTheStreamTakesLate(t *testing.T) {
	s := newRawStream(t)
	live := bus.NewLive(s.js, scheme.Default(), bus.WithLiveIdleCheck(time.Hour),
		bus.WithLiveDrop(func(m *nats.Msg) bool { return m.Header.Get("Test-Drop") != "" }))
	msg := func(name string, rev int64, linked bool) *nats.Msg {
		m := nats.NewMsg(bus.ObjectSubject(s.pods, "default", name))
		data, err := proto.Marshal(pod(name))
		if err != nil {
			t.Fatal(err)
		}
		m.Data = data
		m.Header.Set(bus.HeaderType, string(bus.Added))
		m.Header.Set(bus.HeaderKind, "v1/Pod")
		m.Header.Set(bus.HeaderRevision, strconv.FormatInt(rev, 10))
		m.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(rev-1, 10))
		m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(rev, 0, 0))
		if linked {
			m.Header.Set(bus.HeaderFamilyPrev, bus.MsgID(rev-1, 0, 0))
		}
		return m
	}
	ctx := context.Background()
	if _, err := s.js.PublishMsg(ctx, msg("a", 10, false)); err != nil {
		t.Fatal(err)
	}
	events := make(chan bus.Event, 10)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- live.Run(rctx, []string{bus.KindFilter(s.pods, "")}, 9, func(ev bus.Event) error { events <- ev; return nil })
	}()
	t.Cleanup(func() { cancel(); <-done })
	next := func(within time.Duration) (bus.Event, bool) {
		select {
		case ev := <-events:
			return ev, true
		case <-time.After(within):
			return bus.Event{}, false
		}
	}
	if ev, ok := next(10 * time.Second); !ok || ev.Revision != 10 {
		t.Fatalf("first event %v (%v); want revision 10", ev.Revision, ok)
	}
	// b reaches the stream but not the feed; c reaches the feed, linked to b, but the stream
	// refuses it (as it refuses a deposed publisher): the repair finds b and not c.
	b := msg("b", 11, true)
	b.Header.Set("Test-Drop", "1")
	if _, err := s.js.PublishMsg(ctx, b); err != nil {
		t.Fatal(err)
	}
	refused := msg("c", 12, true)
	refused.Header.Set(jetstream.ExpectedLastMsgIDHeader, "not-the-last")
	if _, err := s.js.PublishMsg(ctx, refused); err == nil {
		t.Fatal("setup: the stream took a message with a wrong expected last id")
	}
	if ev, ok := next(10 * time.Second); !ok || ev.Revision != 11 {
		t.Fatalf("event %d (%v); want revision 11 (b, repaired from the stream)", ev.Revision, ok)
	}
	time.Sleep(2 * time.Second) // the repair gave up waiting for c
	// Now the stream takes c; its live copy is lost.
	late := msg("c", 12, true)
	late.Header.Set("Test-Drop", "1")
	if _, err := s.js.PublishMsg(ctx, late); err != nil {
		t.Fatal(err)
	}
	if ev, ok := next(10 * time.Second); !ok || ev.Revision != 12 {
		t.Fatalf("after the stream took c: event %d (%v); want revision 12 within 10s", ev.Revision, ok)
	}
}

// A feed that starts from a revision after which its family published nothing reads nothing
// from the stream (no repair, no consumer: a thousand node agents start so), and one whose
// family did publish since still delivers those messages first (a repair).
func TestLiveStartsWithoutAConsumerWhenNothingFollows(t *testing.T) {
	e := newLiveEnv(t)
	e.write("a")
	fresh := e.revision()
	e.reader(bus.NodeFilter("node-quiet"), fresh, nil)
	e.reader(bus.KindFilter(e.pods, "elsewhere"), fresh, nil)
	deadline := time.Now().Add(10 * time.Second)
	for e.live.Stats().Feeds < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // both feeds past their start
	if s := e.live.Stats(); s.Feeds != 2 || s.Repairs != 0 {
		t.Errorf("two feeds starting with nothing after their revision: %+v; want 2 feeds and no repair", s)
	}
	// A feed of pods in default starting before "b" was written reads it from the stream.
	before := e.revision()
	b := e.write("b")
	late := e.reader(bus.KindFilter(e.pods, "default"), before, nil)
	late.waitFor(t, b)
	assertExactly(t, "late reader", late.got(), []int64{b})
	if s := e.live.Stats(); s.Repairs == 0 {
		t.Errorf("a feed starting before a message of its family: %+v; want a repair that read it", s)
	}
}
