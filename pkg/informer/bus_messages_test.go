package informer

// These tests give the informer a bus the test writes (a SKIFF stream on a NATS of its own,
// with the headers of the bus contract) while it lists from a real apiserver: they pin what
// the informer does with oversize markers, compaction gap markers and node-subject events,
// whatever the publisher of the day sends.

import (
	"context"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
)

type testStream struct {
	t    *testing.T
	js   jetstream.JetStream
	pods *scheme.Kind
	last int64
}

func newTestStream(t *testing.T) *testStream {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t).URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureStream(context.Background(), js, bus.DefaultStreamConfig()); err != nil {
		t.Fatal(err)
	}
	pods, _ := scheme.Default().ForName("pods")
	return &testStream{t: t, js: js, pods: pods}
}

// publish puts a message on subject: obj (stored form, without resourceVersion) at rev, with
// extra headers.
func (s *testStream) publish(subject string, typ bus.EventType, kindHeader string, obj scheme.Object, rev int64, extra map[string]string) {
	s.t.Helper()
	m := nats.NewMsg(subject)
	if obj != nil {
		stored := proto.Clone(obj).(scheme.Object)
		scheme.Meta(stored).ResourceVersion = ""
		data, err := proto.Marshal(stored)
		if err != nil {
			s.t.Fatal(err)
		}
		m.Data = data
	}
	m.Header.Set(bus.HeaderType, string(typ))
	m.Header.Set(bus.HeaderKind, kindHeader)
	m.Header.Set(bus.HeaderRevision, strconv.FormatInt(rev, 10))
	m.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(s.last, 10))
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(rev, 0, 0))
	for k, v := range extra {
		m.Header.Set(k, v)
	}
	if _, err := s.js.PublishMsg(context.Background(), m); err != nil {
		s.t.Fatalf("publish %s at %d: %v", subject, rev, err)
	}
	s.last = rev
}

func (s *testStream) pod(typ bus.EventType, obj scheme.Object, rev int64) {
	s.t.Helper()
	md := obj.GetMetadata()
	s.publish(bus.ObjectSubject(s.pods, md.GetNamespace(), md.GetName()), typ, "v1/Pod", obj, rev, nil)
}

func (s *testStream) oversize(subject string, typ bus.EventType, ns, name string, rev int64) {
	s.t.Helper()
	s.publish(subject, typ, "v1/Pod", nil, rev, map[string]string{
		bus.HeaderOversize: "3000000", bus.HeaderNamespace: ns, bus.HeaderName: name})
}

func (s *testStream) gap(c int64) {
	s.t.Helper()
	m := nats.NewMsg(bus.GapSubject)
	m.Header.Set(bus.HeaderType, string(bus.Gap))
	m.Header.Set(bus.HeaderRevision, strconv.FormatInt(c, 10))
	m.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(s.last, 10))
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(c, -1, 0))
	if _, err := s.js.PublishMsg(context.Background(), m); err != nil {
		s.t.Fatalf("publish gap marker %d: %v", c, err)
	}
	s.last = c
}

// TestOversizeEventsAreFetched: the informer reads the object of an oversize event with its
// client (retrying when the API is unreachable, without losing the event), and treats one
// gone since as deleted.
func TestOversizeEventsAreFetched(t *testing.T) {
	f := start(t)
	ts := newTestStream(t)
	flaky := &flakyClient{Interface: f.env.Client}
	inf := f.informer(func(c *Config) { c.JetStream = ts.js; c.Client = flaky })
	rec, m := &recorder{}, newMirror()
	inf.AddEventHandler(rec)
	inf.AddEventHandler(m)
	run(t, inf)
	waitSynced(t, inf)
	ts.last = inf.LastRevision()

	flaky.getFailures.Store(2)
	big := f.createPod(t, "default", "big", map[string]string{"v": "1"})
	ts.oversize(bus.ObjectSubject(f.pods, "default", "big"), bus.Added, "default", "big", resourceVersion(big))
	evs := rec.waitFor(t, "add default/big")
	if !proto.Equal(evs[0].obj, big) {
		t.Errorf("added %v; want the object as the API has it: %v", evs[0].obj, big)
	}
	if n := flaky.gets.Load(); n != 3 {
		t.Errorf("%d gets; want 3 (two failed)", n)
	}

	// A change whose object is gone by the time the informer reads it: deleted.
	changed := f.relabel(t, "default", "big", "v", "2")
	f.deletePod(t, "default", "big", zero())
	ts.oversize(bus.ObjectSubject(f.pods, "default", "big"), bus.Modified, "default", "big", resourceVersion(changed))
	evs = rec.waitFor(t, "add default/big", "delete default/big")
	if evs[1].rv != resourceVersion(big) {
		t.Errorf("delete carries revision %d; want the last known state, %d", evs[1].rv, resourceVersion(big))
	}
	// Its delete marker: nothing left to delete.
	small := f.createPod(t, "default", "small", nil)
	ts.oversize(bus.ObjectSubject(f.pods, "default", "big"), bus.Deleted, "default", "big", resourceVersion(small)-1)
	ts.pod(bus.Added, small, resourceVersion(small))
	rec.waitFor(t, "add default/big", "delete default/big", "add default/small")
	if err := m.check(inf.Store()); err != nil {
		t.Error(err)
	}
	if err := f.matchesList(inf.Store().List(), "", client.ListOptions{}); err != nil {
		t.Error(err)
	}
	if n := inf.Relists(); n != 0 {
		t.Errorf("%d relists; want 0", n)
	}
}

// TestGapMakesInformerRelist: a compaction gap that lost changes the informer needs makes it
// relist, after which its cache equals a fresh list and it follows the bus again.
func TestGapMakesInformerRelist(t *testing.T) {
	f := start(t)
	ts := newTestStream(t)
	f.createPod(t, "default", "g-0", nil)
	inf := f.informer(func(c *Config) { c.JetStream = ts.js })
	rec, m := &recorder{}, newMirror()
	inf.AddEventHandler(rec)
	inf.AddEventHandler(m)
	run(t, inf)
	waitSynced(t, inf)
	rec.waitFor(t, "add default/g-0")
	ts.last = inf.LastRevision()

	// Lost: never published.
	f.deletePod(t, "default", "g-0", zero())
	g1 := f.createPod(t, "default", "g-1", nil)
	ts.gap(resourceVersion(g1) + 1)
	rec.waitFor(t, "add default/g-0", "delete default/g-0", "add default/g-1")
	if n := inf.Relists(); n != 1 {
		t.Errorf("%d relists; want 1", n)
	}
	if err := f.matchesList(inf.Store().List(), "", client.ListOptions{}); err != nil {
		t.Error(err)
	}
	// Resumed after the gap: no further relist, events flow.
	g2 := f.createPod(t, "default", "g-2", nil)
	ts.pod(bus.Added, g2, resourceVersion(g2))
	rec.waitFor(t, "add default/g-0", "delete default/g-0", "add default/g-1", "add default/g-2")
	if n := inf.Relists(); n != 1 {
		t.Errorf("%d relists after the gap; want still 1", n)
	}
	if err := m.check(inf.Store()); err != nil {
		t.Error(err)
	}
}

// TestNodeInformerKeepsOnlyItsPods: a node's informer drops a pod whose change moves it off
// the node (or whose object, read for an oversize event, is gone), ignores deletes of pods it
// never had and other kinds on its subjects.
func TestNodeInformerKeepsOnlyItsPods(t *testing.T) {
	f := start(t)
	ts := newTestStream(t)
	inf := f.informer(func(c *Config) { c.JetStream = ts.js; c.NodeName = "n1"; c.Namespace = "default" })
	rec, m := &recorder{}, newMirror()
	inf.AddEventHandler(rec)
	inf.AddEventHandler(m)
	run(t, inf)
	waitSynced(t, inf)
	ts.last = inf.LastRevision()
	ctx := context.Background()
	n1 := func(name string) string { return bus.NodeSubject("n1", f.pods, "default", name) }

	f.createPod(t, "default", "q", nil)
	if err := f.env.Client.Bind(ctx, "default", "q", "n1"); err != nil {
		t.Fatal(err)
	}
	q, err := f.env.Client.Get(ctx, f.pods, "default", "q")
	if err != nil {
		t.Fatal(err)
	}
	rev := resourceVersion(q)
	ts.publish(n1("q"), bus.Added, "v1/Pod", q, rev, nil)
	rec.waitFor(t, "add default/q")

	// Noise on the node's subjects: a delete of a pod it never had, another kind, a pod of
	// another namespace.
	ts.publish(n1("never"), bus.Deleted, "v1/Pod", podObj("default", "never", nil), rev+1, nil)
	ts.publish(bus.NodeSubject("n1", f.pods, "default", "svc"), bus.Added, "v1/Service", nil, rev+2, nil)
	other := podObj("other", "o", nil)
	other.Spec.NodeName = "n1"
	ts.publish(bus.NodeSubject("n1", f.pods, "other", "o"), bus.Added, "v1/Pod", other, rev+3, nil)
	// q moves off the node.
	moved := proto.Clone(q).(*corev1.Pod)
	moved.Spec.NodeName = "n2"
	ts.publish(n1("q"), bus.Modified, "v1/Pod", moved, rev+4, nil)
	evs := rec.waitFor(t, "add default/q", "delete default/q")
	if evs[1].rv != rev+4 {
		t.Errorf("delete at %d; want %d", evs[1].rv, rev+4)
	}
	if inf.LastRevision() != rev+4 {
		t.Errorf("LastRevision %d; want %d (ignored events still advance it)", inf.LastRevision(), rev+4)
	}
	// Back on the node, then an oversize change of a pod deleted meanwhile: deleted.
	ts.publish(n1("q"), bus.Modified, "v1/Pod", q, rev+5, nil)
	rec.waitFor(t, "add default/q", "delete default/q", "add default/q")
	f.deletePod(t, "default", "q", zero())
	ts.oversize(n1("q"), bus.Modified, "default", "q", rev+6)
	rec.waitFor(t, "add default/q", "delete default/q", "add default/q", "delete default/q")
	if err := m.check(inf.Store()); err != nil {
		t.Error(err)
	}
}
