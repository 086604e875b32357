package publisher_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/limits"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/bus"
)

// The stream holds exactly what etcd's history says, message by message: ids, order, types,
// subjects (object and node copies), predecessors and payloads.
func TestPublisherMatchesEtcdHistory(t *testing.T) {
	f := newFixture(t, 0)
	first := f.put("/pods/default/a", pod("a", map[string]string{"app": "web"}))
	f.put("/pods/default/b", pod("b", nil))
	f.put("/pods/default/dotted.name", pod("dotted.name", nil))
	f.put("/nodes/node-1", &corev1.Node{Metadata: &metav1.ObjectMeta{Name: "node-1"}})
	f.put("/services/default/s", &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "s", Namespace: "default"}})
	if _, err := f.etcd.Put(context.Background(), "/elsewhere/x", "not published"); err != nil {
		t.Fatal(err)
	}
	f.put("/unknownkind/x", pod("x", nil)) // under the prefix but not an object: not published

	a := pod("a", map[string]string{"app": "web"})
	a.Metadata.Annotations["note"] = "1" // neither labels nor selectable fields
	f.put("/pods/default/a", a)
	a.Metadata.Labels["app"] = "api" // label
	f.put("/pods/default/a", a)
	a.Status = &corev1.PodStatus{Phase: "Pending"} // selectable field
	f.put("/pods/default/a", a)
	a.Spec.NodeName = "node-1" // bound: a copy on the node's subject
	f.put("/pods/default/a", a)
	a.Metadata.Annotations["note"] = "2"
	f.put("/pods/default/a", a)
	a.Metadata.Labels["tier"] = "front"
	f.put("/pods/default/a", a)
	a.Spec.NodeName = "node.2" // moved: DELETED on the old node, ADDED on the new one
	f.put("/pods/default/a", a)
	// One transaction, one revision, several changes: numbered in order.
	last := f.txn(clientv3.OpDelete(prefix+"/pods/default/a"), clientv3.OpDelete(prefix+"/pods/default/b"),
		clientv3.OpDelete(prefix+"/services/default/s"))

	want := f.history(first, last, 0)
	f.start()
	compare(t, f.waitMessages(len(want)), want)
}

// A publisher that crashed between two changes of one revision (one etcd transaction, as a
// namespace delete is) must publish the rest after it restarts: message ids number changes
// within their revision, whatever watch responses they arrived in.
func TestPublisherResumesMidRevision(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	first := f.put("/pods/default/a", pod("a", nil))
	bound := pod("b", nil)
	bound.Spec.NodeName = "n1"
	f.put("/pods/default/b", bound)
	f.put("/pods/default/c", pod("c", nil))
	// One transaction deletes b and c: one revision, three messages (b on its node too).
	last := f.txn(clientv3.OpDelete(prefix+"/pods/default/b"), clientv3.OpDelete(prefix+"/pods/default/c"))
	want := f.history(first, last, 0)

	stop := f.start()
	full := f.waitMessages(len(want))
	stop()
	compare(t, full, want)

	// Crashes after the stream acknowledged each message of the last revision but the last:
	// the stream holds a prefix of what an uninterrupted publisher wrote; the resumed
	// publisher must write exactly the rest.
	lastRev := strconv.FormatInt(last, 10)
	for cut := len(full) - 1; cut > 0 && full[cut-1].rev == lastRev; cut-- {
		if err := f.js.DeleteStream(ctx, bus.StreamName); err != nil {
			t.Fatal(err)
		}
		if _, err := bus.EnsureStream(ctx, f.js, bus.DefaultStreamConfig()); err != nil {
			t.Fatal(err)
		}
		for _, m := range full[:cut] {
			out := nats.NewMsg(m.subject)
			out.Header, out.Data = m.header, m.data
			if _, err := f.js.PublishMsg(ctx, out); err != nil {
				t.Fatal(err)
			}
		}
		stop := f.start()
		got := f.waitMessages(len(want))
		stop()
		t.Logf("cut after %d messages: resumed", cut)
		compare(t, got, want)
	}
}

// MODIFIED messages carry the previous object when labels or selectable fields changed, on
// the object's subject and the node's; other changes do not.
func TestPublisherCarriesPreviousObject(t *testing.T) {
	f := newFixture(t, 0)
	p := pod("p", map[string]string{"app": "web"})
	p.Spec.NodeName = "n1"
	f.put("/pods/default/p", p)
	p.Metadata.Labels["app"] = "api"
	labelRev := f.put("/pods/default/p", p)
	p.Status = &corev1.PodStatus{Phase: "Running"}
	fieldRev := f.put("/pods/default/p", p)
	p.Metadata.Annotations["note"] = "changed"
	p.Status.Message = "not a selectable field"
	plainRev := f.put("/pods/default/p", p)

	f.start()
	got := f.waitMessages(8) // ADDED twice (object, node), then three changes twice each
	decode := func(b []byte) *corev1.Pod {
		var out corev1.Pod
		if err := proto.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	checked := 0
	for _, m := range got {
		if m.typ != "MODIFIED" {
			continue
		}
		checked++
		switch m.rev {
		case strconv.FormatInt(labelRev, 10), strconv.FormatInt(fieldRev, 10):
			n, err := strconv.Atoi(m.offset)
			if err != nil || n <= 0 || n >= len(m.data) {
				t.Errorf("%s: Skiff-Prev-Offset %q on %d bytes; want the previous object after the new one", m, m.offset, len(m.data))
				continue
			}
			cur, prev := decode(m.data[:n]), decode(m.data[n:])
			if m.rev == strconv.FormatInt(labelRev, 10) {
				if cur.Metadata.Labels["app"] != "api" || prev.Metadata.Labels["app"] != "web" {
					t.Errorf("%s: labels new %v, previous %v; want api, web", m, cur.Metadata.Labels, prev.Metadata.Labels)
				}
			} else if cur.GetStatus().GetPhase() != "Running" || prev.GetStatus().GetPhase() != "" {
				t.Errorf("%s: phase new %q, previous %q; want Running, empty", m, cur.GetStatus().GetPhase(), prev.GetStatus().GetPhase())
			}
		case strconv.FormatInt(plainRev, 10):
			if m.offset != "" {
				t.Errorf("%s: carries the previous object, but no label or selectable field changed", m)
			}
			if cur := decode(m.data); cur.Status.GetMessage() != "not a selectable field" {
				t.Errorf("%s: payload is not the new object: %v", m, cur)
			}
		default:
			t.Errorf("unexpected MODIFIED message %s", m)
		}
	}
	if checked != 6 {
		t.Errorf("%d MODIFIED messages; want 6 (three changes, on the object's and the node's subject):\n%s", checked, list(got))
	}
}

// A change the bus cannot carry is published as an oversize marker in its place on the
// chain, and publishing goes on: the changes after it are published, the publisher never
// restarts.
func TestPublisherOversizeMarker(t *testing.T) {
	const maxPayload = 64 << 10
	f := newFixture(t, maxPayload)
	big := func(name string, size int) *corev1.Pod {
		p := pod(name, map[string]string{"app": "web"})
		p.Metadata.Annotations["big"] = strings.Repeat("x", size)
		return p
	}
	first := f.put("/pods/default/small", pod("small", nil))
	f.put("/pods/default/huge", big("huge", 100<<10)) // too large alone
	half := big("half", 40<<10)
	f.put("/pods/default/half", half) // fits
	half.Metadata.Labels["app"] = "api"
	f.put("/pods/default/half", half) // with its previous value (a label changed) it does not
	f.put("/pods/default/after", pod("after", nil))
	last := f.txn(clientv3.OpDelete(prefix + "/pods/default/huge"))

	want := f.history(first, last, 0)
	f.start()
	got := f.waitMessages(len(want))
	if len(got) != len(want) {
		compare(t, got, want)
		return
	}
	markers := 0
	for i, w := range want {
		g := got[i]
		if len(w.data)+512 < maxPayload {
			compare(t, got[i:i+1], want[i:i+1])
			continue
		}
		// The marker: same place, subject, id and Skiff headers; no object.
		markers++
		if g.subject != w.subject || g.id != w.id || g.typ != w.typ || g.rev != w.rev || g.prevRev != w.prevRev || g.kind != w.kind {
			t.Errorf("marker %d:\n   got %s\n  want %s", i, g, w)
		}
		if len(g.data) != 0 || g.offset != "" {
			t.Errorf("marker %s carries %d bytes, prev offset %q; want none", g, len(g.data), g.offset)
		}
		if o := g.header.Get(bus.HeaderOversize); o != strconv.Itoa(len(w.data)) {
			t.Errorf("marker %s: Skiff-Oversize %q, want %d", g, o, len(w.data))
		}
		name := strings.TrimPrefix(w.subject, "skiff.obj.core.pods.default.")
		if g.header.Get(bus.HeaderNamespace) != "default" || g.header.Get(bus.HeaderName) != name {
			t.Errorf("marker %s names %s/%s, want default/%s", g, g.header.Get(bus.HeaderNamespace), g.header.Get(bus.HeaderName), name)
		}
	}
	if markers != 3 { // huge created, half with its previous value, huge deleted (its last state)
		t.Errorf("%d oversize markers, want 3:\n%s", markers, list(got))
	}
	if n := f.metric("skiff_bus_oversize_messages_total"); n != 3 {
		t.Errorf("skiff_bus_oversize_messages_total = %v, want 3", n)
	}
	if n := len(f.logs.find("change too large for the bus")); n != 3 {
		t.Errorf("%d oversize warnings, want 3", n)
	} else if key := f.logs.find("change too large for the bus")[0].attrs["key"]; key != prefix+"/pods/default/huge" {
		t.Errorf("oversize warning names key %q", key)
	}
	if len(f.logs.find("max_payload is below")) != 1 {
		t.Errorf("no warning at start that NATS' max payload %d is below %d", maxPayload, limits.BusMaxPayloadBytes)
	}
	if ended := f.logs.find("term ended"); len(ended) > 0 {
		t.Errorf("the publisher restarted: %v", ended[0].attrs)
	}
}

// A publisher whose start point etcd has compacted away publishes a gap marker, then
// continues from the compaction revision.
func TestPublisherAfterCompaction(t *testing.T) {
	f := newFixture(t, 0)
	f.put("/pods/default/a", pod("a", nil))
	f.put("/pods/default/b", pod("b", nil))
	last := f.put("/pods/default/c", pod("c", nil))
	if _, err := f.etcd.Compact(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	f.start()
	got := f.waitMessages(2)
	want := append([]msg{gapMarker(last, 0)}, f.history(last, last, last-1)...)
	compare(t, got, want)
	if n := f.metric("skiff_bus_gap_markers_total"); n != 1 {
		t.Errorf("skiff_bus_gap_markers_total = %v, want 1", n)
	}
}

// The gap marker of a compaction while the publisher was away sits between what it had
// published and what follows; and a stream that ends with a marker resumes after it.
func TestPublisherGapMarkerMidStream(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	first := f.put("/pods/default/a", pod("a", nil))
	seen := f.put("/pods/default/b", pod("b", nil))
	before := f.history(first, seen, 0)
	stop := f.start()
	f.waitMessages(len(before))
	stop()

	// While the publisher is away: changes, then a compaction past them, then a change
	// outside the registry so that the stream ends with the marker.
	f.put("/pods/default/lost", pod("lost", nil))
	p := pod("a", nil)
	p.Metadata.Labels = map[string]string{"lost": "too"}
	f.put("/pods/default/a", p)
	resp, err := f.etcd.Put(ctx, "/elsewhere/k", "v")
	if err != nil {
		t.Fatal(err)
	}
	compactRev := resp.Header.Revision
	if _, err := f.etcd.Compact(ctx, compactRev); err != nil {
		t.Fatal(err)
	}
	stop = f.start()
	got := f.waitMessages(len(before) + 1)
	stop()
	want := append(before, gapMarker(compactRev, seen))
	compare(t, got, want)

	// The marker is the stream's last message: a new publisher resumes after it.
	after := f.put("/pods/default/after", pod("after", nil))
	f.start()
	want = append(want, f.history(after, after, compactRev-1)...)
	compare(t, f.waitMessages(len(want)), want)
}

func gapMarker(c, prevRev int64) msg {
	return msg{subject: bus.GapSubject, id: bus.MsgID(c, -1, 0), typ: string(bus.Gap),
		rev: strconv.FormatInt(c, 10), prevRev: strconv.FormatInt(prevRev, 10)}
}

// Every failed term campaigns again (etcd writes): the wait between terms grows.
func TestPublisherBacksOffBetweenTerms(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	p := f.publisher() // creates the stream
	// A sealed stream cannot be updated back: every term fails at its start.
	s, err := f.js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Sealed = true
	if _, err := f.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	f.run(p)
	deadline := time.Now().Add(20 * time.Second)
	for len(f.logs.find("term ended")) < 5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ended := f.logs.find("term ended")
	if len(ended) < 5 {
		t.Fatalf("%d failed terms in 20s; want 5", len(ended))
	}
	var waits []time.Duration
	for _, r := range ended[:5] {
		d, err := time.ParseDuration(r.attrs["retryIn"])
		if err != nil {
			t.Fatalf("term ended without a retryIn: %v", r.attrs)
		}
		waits = append(waits, d)
	}
	t.Logf("waits after failed terms: %v (error: %s)", waits, ended[0].attrs["error"])
	for i := 1; i < len(waits); i++ {
		if waits[i] < waits[i-1] {
			t.Errorf("wait %d (%s) shorter than the one before (%s): %v", i, waits[i], waits[i-1], waits)
		}
	}
	if waits[4] < 4*waits[0] || waits[4] < time.Second {
		t.Errorf("waits do not grow: %v", waits)
	}
}

// The lag metrics: zero once everything is published, including revisions etcd spent
// outside the registry after the last change (a watch catching up sees etcd's current
// revision in its response headers; the publisher asks etcd for progress to know that
// nothing more is coming).
func TestPublisherLagMetrics(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	var last int64
	for i := range 20 {
		last = f.put("/pods/default/a", pod("a", map[string]string{"i": strconv.Itoa(i)}))
	}
	for range 5 {
		if _, err := f.etcd.Put(ctx, "/elsewhere/k", "v"); err != nil { // not published
			t.Fatal(err)
		}
	}
	f.start()
	f.waitMessages(20)
	deadline := time.Now().Add(10 * time.Second)
	for f.metric("skiff_bus_publisher_lag_revisions") != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if lag := f.metric("skiff_bus_publisher_lag_revisions"); lag != 0 {
		t.Errorf("skiff_bus_publisher_lag_revisions = %v after everything was published; want 0", lag)
	}
	if lag := f.metric("skiff_bus_publisher_lag_seconds"); lag != 0 {
		t.Errorf("skiff_bus_publisher_lag_seconds = %v after everything was published; want 0", lag)
	}
	if n := f.metric("skiff_bus_published_messages_total"); n != 20 {
		t.Errorf("skiff_bus_published_messages_total = %v, want 20", n)
	}
	if rev := f.metric("skiff_bus_published_revision"); int64(rev) != last {
		t.Errorf("skiff_bus_published_revision = %v, want %d", rev, last)
	}
	if f.metric("skiff_bus_publisher_leader") != 1 {
		t.Error("skiff_bus_publisher_leader is not 1")
	}
}

// A refused publish stops everything published after it (the expected-last-id chain), even
// with several messages in flight: here another writer appends to the stream, the next round
// (three changes of one transaction) is refused as a whole, the term ends and the next one
// resumes after the foreign message, publishing the whole round again.
func TestPublisherRefusalStopsEverythingAfterIt(t *testing.T) {
	f := newFixture(t, 0)
	ctx := context.Background()
	first := f.put("/pods/default/a", pod("a", nil))
	f.start()
	before := f.waitMessages(1)

	// Another writer appends the next message, as a deposed leader that has not noticed
	// would.
	foreign := nats.NewMsg("skiff.obj.core.pods.default.foreign")
	foreign.Header.Set(bus.HeaderType, "ADDED")
	foreign.Header.Set(bus.HeaderRevision, strconv.FormatInt(first, 10))
	foreign.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(first, 10))
	foreign.Header.Set(bus.HeaderKind, "v1/Pod")
	foreign.Header.Set("Nats-Msg-Id", bus.MsgID(first, 1, 0))
	foreign.Header.Set("Nats-Expected-Last-Msg-Id", before[0].id)
	if _, err := f.js.PublishMsg(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	txn := f.txn(clientv3.OpPut(prefix+"/pods/default/x", storageEncode(t, pod("x", nil))),
		clientv3.OpPut(prefix+"/pods/default/y", storageEncode(t, pod("y", nil))),
		clientv3.OpPut(prefix+"/pods/default/z", storageEncode(t, pod("z", nil))))

	want := f.history(first, first, 0)
	want = append(want, msg{subject: foreign.Subject, id: bus.MsgID(first, 1, 0), typ: "ADDED", rev: strconv.FormatInt(first, 10),
		prevRev: strconv.FormatInt(first, 10), kind: "v1/Pod"})
	want = append(want, f.history(txn, txn, first)...)
	compare(t, f.waitMessages(len(want)), want)
	if len(f.logs.find("term ended")) == 0 {
		t.Error("the publisher's term did not end on the refusal")
	}
}
