package bus_test

// These tests write the stream themselves, with the headers of the message contract
// (docs/event-bus.md), into a real JetStream stream: they pin what a reader does with each
// kind of message, whatever the publisher of the day sends.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
)

// rawStream is a SKIFF stream on a NATS of its own, written by the test.
type rawStream struct {
	t      *testing.T
	js     jetstream.JetStream
	stream jetstream.Stream
	pods   *scheme.Kind
	last   int64 // revision of the last message, for Skiff-Prev-Revision
}

func newRawStream(t *testing.T) *rawStream {
	t.Helper()
	n := testenv.NATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := bus.EnsureStream(context.Background(), js, bus.DefaultStreamConfig())
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := scheme.Default().ForName("pods")
	return &rawStream{t: t, js: js, stream: stream, pods: pods}
}

func (s *rawStream) publish(m *nats.Msg, rev int64) uint64 {
	s.t.Helper()
	m.Header.Set(bus.HeaderRevision, strconv.FormatInt(rev, 10))
	m.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(s.last, 10))
	ack, err := s.js.PublishMsg(context.Background(), m)
	if err != nil {
		s.t.Fatalf("publish %s at %d: %v", m.Subject, rev, err)
	}
	s.last = rev
	return ack.Sequence
}

// change publishes a change of pod p at rev; prev, if not nil, travels as the previous value.
func (s *rawStream) change(typ bus.EventType, p *corev1.Pod, rev int64, prev *corev1.Pod) uint64 {
	s.t.Helper()
	return s.changeOn(bus.ObjectSubject(s.pods, p.Metadata.Namespace, p.Metadata.Name), typ, p, rev, prev)
}

func (s *rawStream) changeOn(subject string, typ bus.EventType, p *corev1.Pod, rev int64, prev *corev1.Pod) uint64 {
	s.t.Helper()
	m := nats.NewMsg(subject)
	m.Header.Set(bus.HeaderType, string(typ))
	m.Header.Set(bus.HeaderKind, "v1/Pod")
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(rev, 0, 0))
	data, err := proto.Marshal(p)
	if err != nil {
		s.t.Fatal(err)
	}
	if prev != nil {
		old, err := proto.Marshal(prev)
		if err != nil {
			s.t.Fatal(err)
		}
		m.Header.Set(bus.HeaderPrevOffset, strconv.Itoa(len(data)))
		data = append(data, old...)
	}
	m.Data = data
	return s.publish(m, rev)
}

// gap publishes a compaction gap marker: the changes in (last, c) are lost.
func (s *rawStream) gap(c int64) uint64 {
	s.t.Helper()
	m := nats.NewMsg(bus.GapSubject)
	m.Header.Set(bus.HeaderType, string(bus.Gap))
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(c, -1, 0))
	return s.publish(m, c)
}

// oversize publishes a marker for a change of ns/name too large for the bus.
func (s *rawStream) oversize(typ bus.EventType, ns, name string, rev int64) uint64 {
	s.t.Helper()
	m := nats.NewMsg(bus.ObjectSubject(s.pods, ns, name))
	m.Header.Set(bus.HeaderType, string(typ))
	m.Header.Set(bus.HeaderKind, "v1/Pod")
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(rev, 0, 0))
	m.Header.Set(bus.HeaderOversize, "2000000")
	m.Header.Set(bus.HeaderNamespace, ns)
	m.Header.Set(bus.HeaderName, name)
	return s.publish(m, rev)
}

// runningReader is a reader running in the background.
type runningReader struct {
	events chan bus.Event
	done   chan struct{} // closed when Run returned, after every event was put on events
	err    error         // what Run returned, once done is closed
}

// reader runs a reader from after in the background until the test ends.
func (s *rawStream) reader(filters []string, after int64, opts ...bus.Option) *runningReader {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runningReader{events: make(chan bus.Event, 100), done: make(chan struct{})}
	r, err := bus.NewSubscription(s.js, scheme.Default(), opts...).Open(ctx, filters, after)
	if err != nil {
		cancel()
		s.t.Fatalf("open after %d: %v", after, err)
	}
	go func() {
		defer close(rr.done)
		defer r.Close()
		rr.err = r.Run(ctx, func(ev bus.Event) error { rr.events <- ev; return nil })
	}()
	s.t.Cleanup(func() {
		cancel()
		select {
		case <-rr.done:
		case <-time.After(5 * time.Second):
			s.t.Error("reader did not stop")
		}
	})
	return rr
}

// next is the reader's next event; the test fails if the reader ends first.
func (rr *runningReader) next(t *testing.T) bus.Event {
	t.Helper()
	select {
	case ev := <-rr.events:
		return ev
	case <-rr.done:
		select {
		case ev := <-rr.events:
			return ev
		default:
		}
		t.Fatalf("reader ended with %v; want an event", rr.err)
	case <-time.After(10 * time.Second):
		t.Fatal("no event in 10s")
	}
	return bus.Event{}
}

// ended waits for the reader to end and returns its error.
func (rr *runningReader) ended(t *testing.T) error {
	t.Helper()
	select {
	case <-rr.done:
		return rr.err
	case <-time.After(10 * time.Second):
		t.Fatal("reader still running after 10s")
	}
	return nil
}

func testPod(name string, labels map[string]string) *corev1.Pod {
	p := pod(name)
	p.Metadata.Labels = labels
	return p
}

// TestIdleReaderOutlivesDroppedMessages: once retention (here a purge) has dropped the
// stream's first messages, an idle reader with no consumer reset pending checks only the
// stream's identity, and keeps running across many idle checks.
func TestIdleReaderOutlivesDroppedMessages(t *testing.T) {
	s := newRawStream(t)
	for i := range 5 {
		s.change(bus.Added, testPod("p-"+strconv.Itoa(i), nil), int64(10+i), nil)
	}
	if err := s.stream.Purge(context.Background(), jetstream.WithPurgeSequence(4)); err != nil {
		t.Fatal(err)
	}
	info, err := s.stream.Info(context.Background())
	if err != nil || info.State.FirstSeq <= 1 {
		t.Fatalf("setup: first sequence %d (%v); want > 1", info.State.FirstSeq, err)
	}
	const idle = 10 * time.Millisecond
	r := s.reader([]string{bus.KindFilter(s.pods, "")}, 14, bus.WithIdleCheck(idle))
	select {
	case <-r.done:
		t.Fatalf("idle reader ended with %v", r.err)
	case ev := <-r.events:
		t.Fatalf("unexpected event %v", ev)
	case <-time.After(50 * idle): // some 30 idle checks
	}
	s.change(bus.Added, testPod("later", nil), 15, nil)
	if ev := r.next(t); ev.Revision != 15 || ev.Object.GetMetadata().GetName() != "later" {
		t.Errorf("event %d %s; want 15 later", ev.Revision, ev.Object.GetMetadata().GetName())
	}
}

// TestIdleReaderNoticesReplacedStream: a stream recreated under the same name (a memory
// stream after a NATS restart) ends an idle reader with ErrTooOld.
func TestIdleReaderNoticesReplacedStream(t *testing.T) {
	s := newRawStream(t)
	s.change(bus.Added, testPod("a", nil), 10, nil)
	r := s.reader([]string{bus.KindFilter(s.pods, "")}, 10, bus.WithIdleCheck(10*time.Millisecond))
	ctx := context.Background()
	if err := s.js.DeleteStream(ctx, bus.StreamName); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // JetStream's creation times are in nanoseconds; be sure
	if _, err := bus.EnsureStream(ctx, s.js, bus.DefaultStreamConfig()); err != nil {
		t.Fatal(err)
	}
	if err := r.ended(t); !errors.Is(err, bus.ErrTooOld) {
		t.Errorf("reader ended with %v; want ErrTooOld", err)
	}
}

// TestGapMarkers: a compaction gap marked in the middle of the stream ends a reader that had
// not read past it and refuses a start before it; later starts, and gaps that lost nothing,
// pass.
func TestGapMarkers(t *testing.T) {
	s := newRawStream(t)
	ctx := context.Background()
	pods := []string{bus.KindFilter(s.pods, "default")}
	s.change(bus.Added, testPod("a", nil), 10, nil)
	r := s.reader(pods, 9)
	if ev := r.next(t); ev.Revision != 10 {
		t.Fatalf("first event at %d; want 10", ev.Revision)
	}
	// Running across the gap (11..19 lost): ErrTooOld, and nothing after the gap is delivered.
	s.change(bus.Added, testPod("b", nil), 11, nil)
	s.gap(20)
	s.change(bus.Added, testPod("c", nil), 20, nil)
	if ev := r.next(t); ev.Revision != 11 {
		t.Fatalf("second event at %d; want 11", ev.Revision)
	}
	if err := r.ended(t); !errors.Is(err, bus.ErrTooOld) {
		t.Fatalf("reader across the gap ended with %v; want ErrTooOld", err)
	}
	if len(r.events) != 0 {
		t.Errorf("reader delivered %d events after the gap", len(r.events))
	}

	// Starting before the gap: refused up front, wherever the gap lies.
	for _, after := range []int64{9, 11, 18} {
		if _, err := bus.NewSubscription(s.js, scheme.Default()).Open(ctx, pods, after); !errors.Is(err, bus.ErrTooOld) {
			t.Errorf("Open after %d (gap lost 12..19): %v; want ErrTooOld", after, err)
		}
		if _, err := bus.StartSequence(ctx, s.js, s.stream, after); !errors.Is(err, bus.ErrTooOld) {
			t.Errorf("StartSequence after %d: %v; want ErrTooOld", after, err)
		}
	}
	// Starting at the gap's end or later: fine, and the events come.
	r = s.reader(pods, 19)
	if ev := r.next(t); ev.Revision != 20 || ev.Object.GetMetadata().GetName() != "c" {
		t.Errorf("after the gap: event %d %s; want 20 c", ev.Revision, ev.Object.GetMetadata().GetName())
	}
	// A node reader's filter does not match the gap's subject; it still gets the marker.
	node := s.reader([]string{bus.NodeFilter("n1")}, 20)
	s.gap(30) // lost 21..29
	if err := node.ended(t); !errors.Is(err, bus.ErrTooOld) {
		t.Errorf("node reader across a gap ended with %v; want ErrTooOld", err)
	}
	if len(node.events) != 0 {
		t.Errorf("node reader got %d events", len(node.events))
	}
	if err := r.ended(t); !errors.Is(err, bus.ErrTooOld) {
		t.Errorf("pod reader across the second gap ended with %v; want ErrTooOld", err)
	}
	// A reader whose filter overlaps the gap subject works (no overlapping filters).
	all := s.reader([]string{bus.AllSubjects()}, 29)
	// A marker that lost nothing (its predecessor is C-1) ends no reader.
	s.gap(31)
	s.change(bus.Added, testPod("d", nil), 31, nil)
	if ev := all.next(t); ev.Revision != 31 {
		t.Errorf("after a lossless gap marker: event %d; want 31", ev.Revision)
	}
}

// TestGapMarkerFirstInStream: when retention leaves the marker as the stream's first
// message, the lost span still ends at C-1.
func TestGapMarkerFirstInStream(t *testing.T) {
	s := newRawStream(t)
	ctx := context.Background()
	s.change(bus.Added, testPod("a", nil), 10, nil)
	seq := s.gap(20)
	s.change(bus.Added, testPod("b", nil), 20, nil)
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSequence(seq)); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.StartSequence(ctx, s.js, s.stream, 15); !errors.Is(err, bus.ErrTooOld) {
		t.Errorf("start in the gap: %v; want ErrTooOld", err)
	}
	if start, err := bus.StartSequence(ctx, s.js, s.stream, 19); err != nil || start != seq {
		t.Errorf("start at the gap's end = %d, %v; want %d (the marker)", start, err, seq)
	}
}

// TestPreviousObjectAndOversize: Skiff-Prev-Offset splits the payload into the object and its
// previous value; an oversize marker becomes an event naming the object.
func TestPreviousObjectAndOversize(t *testing.T) {
	s := newRawStream(t)
	r := s.reader([]string{bus.KindFilter(s.pods, "")}, 0)
	s.change(bus.Modified, testPod("a", map[string]string{"v": "2"}), 10, testPod("a", map[string]string{"v": "1"}))
	s.change(bus.Modified, testPod("a", map[string]string{"v": "2", "w": "x"}), 11, nil)
	s.oversize(bus.Modified, "default", "big", 12)

	ev := r.next(t)
	if ev.PrevObject == nil {
		t.Fatal("no previous object")
	}
	if got := ev.Object.GetMetadata().GetLabels()["v"]; got != "2" {
		t.Errorf("object label v=%s; want 2", got)
	}
	if got := ev.PrevObject.GetMetadata().GetLabels()["v"]; got != "1" {
		t.Errorf("previous object label v=%s; want 1", got)
	}
	if rv := ev.PrevObject.GetMetadata().GetResourceVersion(); rv != "10" {
		t.Errorf("previous object resourceVersion %s; want 10", rv)
	}
	if ev = r.next(t); ev.PrevObject != nil || ev.Object.GetMetadata().GetLabels()["w"] != "x" {
		t.Errorf("event without offset: prev %v, labels %v", ev.PrevObject, ev.Object.GetMetadata().GetLabels())
	}
	ev = r.next(t)
	md := ev.Object.GetMetadata()
	if !ev.Oversize || md.GetName() != "big" || md.GetNamespace() != "default" || md.GetResourceVersion() != "12" ||
		ev.Type != bus.Modified {
		t.Errorf("oversize marker read as %+v, metadata %v", ev, md)
	}
	if pod, ok := ev.Object.(*corev1.Pod); !ok || pod.Kind != "Pod" || pod.ApiVersion != "v1" {
		t.Errorf("oversize object %T %v; want a v1 Pod", ev.Object, ev.Object)
	}
}

// TestOpeningManyReadersAtOnceIsCheap: readers opened together share the stream's handle and
// state reads, so that JetStream's API (which timed out under 200 concurrent watches when
// each opening made four requests) sees about one request per reader: its consumer.
func TestOpeningManyReadersAtOnceIsCheap(t *testing.T) {
	s := newRawStream(t)
	for i := range 50 {
		s.change(bus.Added, testPod("p-"+strconv.Itoa(i), nil), int64(10+i), nil)
	}
	nc, err := nats.Connect(s.js.Conn().ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	requests := map[string]int{}
	sub, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, "$JS.API.DIRECT.") {
			return // direct gets are served by the stream, not the API
		}
		op := strings.Join(strings.Split(m.Subject, ".")[2:4], ".")
		mu.Lock()
		requests[op]++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const n = 200
	subscription := bus.NewSubscription(s.js, scheme.Default())
	readers := make([]*bus.Reader, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := subscription.Open(context.Background(), []string{bus.KindFilter(s.pods, "")}, 59-int64(i%40))
			readers[i] = r
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("open: %v", err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = sub.Unsubscribe()
	mu.Lock()
	total := 0
	for _, c := range requests {
		total += c
	}
	t.Logf("JetStream API requests while opening %d readers: %v", n, requests)
	if total > n+n/10 {
		t.Errorf("%d JetStream API requests to open %d readers (%v); want about one each", total, n, requests)
	}
	mu.Unlock()
	for _, r := range readers {
		r.Close()
	}
}
