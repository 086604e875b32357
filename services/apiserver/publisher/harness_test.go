package publisher_test

// The harness of the publisher's tests: real etcd and NATS, a publisher run in the background,
// the stream read back message by message, and an independent account of what the stream
// must hold, computed from etcd's own history.

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/embedded"
	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/services/apiserver/publisher"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

const prefix = "/registry"

type fixture struct {
	t    *testing.T
	etcd *clientv3.Client
	nc   *nats.Conn
	js   jetstream.JetStream
	logs *logRecorder
	reg  *prometheus.Registry
}

// newFixture starts etcd and NATS (max payload 0: what the bus needs).
func newFixture(t *testing.T, maxPayload int32) *fixture {
	t.Helper()
	_, etcd := testenv.Etcd(t)
	n, err := embedded.StartNATS(embedded.NATSConfig{Dir: t.TempDir(), Addr: "127.0.0.1:0", MaxPayload: maxPayload})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, etcd: etcd, nc: nc, js: js, logs: &logRecorder{}, reg: prometheus.NewRegistry()}
}

// publisher makes a publisher (a new one each call, as a restarted apiserver would).
func (f *fixture) publisher() *publisher.Publisher {
	f.t.Helper()
	f.reg = prometheus.NewRegistry()
	p, err := publisher.New(context.Background(), publisher.Config{Etcd: f.etcd, NATS: f.nc, Scheme: scheme.Default(),
		Prefix: prefix, Stream: bus.DefaultStreamConfig(), Identity: "test", Logger: slog.New(f.logs), Metrics: f.reg})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// start runs a new publisher until the returned stop is called.
func (f *fixture) start() (stop func()) { return f.run(f.publisher()) }

// run runs p until the returned stop is called.
func (f *fixture) run(p *publisher.Publisher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	f.t.Cleanup(stop)
	return stop
}

// storageEncode encodes obj as the registry stores it.
func storageEncode(t *testing.T, obj scheme.Object) string {
	t.Helper()
	v, err := storage.Encode(obj)
	if err != nil {
		t.Fatal(err)
	}
	return string(v)
}

// put stores obj at key as the registry would and returns the revision.
func (f *fixture) put(key string, obj scheme.Object) int64 {
	f.t.Helper()
	v, err := storage.Encode(obj)
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := f.etcd.Put(context.Background(), prefix+key, string(v))
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.Header.Revision
}

func (f *fixture) txn(ops ...clientv3.Op) int64 {
	f.t.Helper()
	resp, err := f.etcd.Txn(context.Background()).Then(ops...).Commit()
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.Header.Revision
}

// msg is one stream message, as far as the tests compare it.
type msg struct {
	seq     uint64
	subject string
	id      string
	typ     string
	rev     string
	prevRev string
	kind    string
	offset  string // Skiff-Prev-Offset
	data    []byte
	header  nats.Header
}

func (m msg) String() string {
	s := fmt.Sprintf("%s %s %s rev=%s prev=%s", m.id, m.typ, m.subject, m.rev, m.prevRev)
	if m.offset != "" {
		s += " prevOffset=" + m.offset
	}
	if o := m.header.Get(bus.HeaderOversize); o != "" {
		s += " oversize=" + o
	}
	return s + fmt.Sprintf(" (%d bytes)", len(m.data))
}

// dump reads every message the stream holds.
func (f *fixture) dump() []msg {
	f.t.Helper()
	ctx := context.Background()
	s, err := f.js.Stream(ctx, bus.StreamName)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []msg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			f.t.Fatalf("read message %d: %v", seq, err)
		}
		h := m.Header
		out = append(out, msg{seq: seq, subject: m.Subject, id: h.Get(jetstream.MsgIDHeader), typ: h.Get(bus.HeaderType),
			rev: h.Get(bus.HeaderRevision), prevRev: h.Get(bus.HeaderPrevRevision), kind: h.Get(bus.HeaderKind),
			offset: h.Get(bus.HeaderPrevOffset), data: m.Data, header: h})
	}
	return out
}

// waitMessages waits until the stream holds at least n messages and returns them.
func (f *fixture) waitMessages(n int) []msg {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := f.dump()
		if len(got) >= n {
			time.Sleep(100 * time.Millisecond) // anything extra (which would be wrong) shows too
			return f.dump()
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the stream holds %d messages after 20s; want %d:\n%s", len(got), n, list(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func list(ms []msg) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "  %s\n", m)
	}
	return b.String()
}

// history is what the stream must hold for etcd's history from revision from to to (a
// revision that changed a registry key), when the message before it has revision prevRev:
// computed from etcd's own watch with full decoding, independently of the publisher's code.
func (f *fixture) history(from, to, prevRev int64) []msg {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []msg
	index, lastRev := 0, int64(0)
	w := f.etcd.Watch(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithPrevKV())
	for resp := range w {
		if err := resp.Err(); err != nil {
			f.t.Fatalf("history watch: %v", err)
		}
		for _, ev := range resp.Events {
			rev := ev.Kv.ModRevision
			if rev > to {
				return out
			}
			if rev != lastRev {
				index, lastRev = -1, rev
			}
			index++ // every change under the prefix has its index, published or not
			parts := strings.Split(strings.TrimPrefix(string(ev.Kv.Key), prefix+"/"), "/")
			k, err := scheme.Default().ForName(parts[0])
			if err != nil || parts[0] != k.Resource || (k.Namespaced && len(parts) != 3) || (!k.Namespaced && len(parts) != 2) {
				continue // not an object: not published
			}
			ns, name := "", parts[len(parts)-1]
			if k.Namespaced {
				ns = parts[1]
			}
			var prevVal []byte
			if ev.PrevKv != nil {
				prevVal = ev.PrevKv.Value
			}
			typ, data, offset := "MODIFIED", ev.Kv.Value, ""
			switch {
			case ev.Type == mvccpb.DELETE:
				typ, data = "DELETED", prevVal
			case ev.Kv.CreateRevision == ev.Kv.ModRevision:
				typ = "ADDED"
			case selectionDiffers(f.t, k, prevVal, ev.Kv.Value):
				offset = strconv.Itoa(len(ev.Kv.Value))
				data = append(append([]byte{}, ev.Kv.Value...), prevVal...)
			}
			mk := func(subject, typ string, data []byte, offset string, cp int) msg {
				m := msg{subject: subject, id: fmt.Sprintf("%d.%d.%d", rev, index, cp), typ: typ,
					rev: strconv.FormatInt(rev, 10), prevRev: strconv.FormatInt(prevRev, 10),
					kind: k.APIVersion() + "/" + k.Kind, offset: offset, data: data}
				prevRev = rev
				return m
			}
			tok := func(s string) string {
				if s == "" {
					return "_"
				}
				return strings.ReplaceAll(s, ".", "~")
			}
			group := k.Group
			if group == "" {
				group = "core"
			}
			out = append(out, mk(fmt.Sprintf("skiff.obj.%s.%s.%s.%s", group, k.Resource, tok(ns), tok(name)), typ, data, offset, 0))
			if k.Kind == "Pod" {
				oldNode, newNode := podNodeOf(f.t, prevVal), ""
				if ev.Type != mvccpb.DELETE {
					newNode = podNodeOf(f.t, ev.Kv.Value)
				}
				nodeSubject := func(node string) string {
					return fmt.Sprintf("skiff.node.%s.core.pods.%s.%s", tok(node), tok(ns), tok(name))
				}
				cp := 1
				if oldNode != "" && oldNode != newNode {
					out = append(out, mk(nodeSubject(oldNode), "DELETED", prevVal, "", cp))
					cp++
				}
				if newNode != "" && newNode != oldNode {
					out = append(out, mk(nodeSubject(newNode), "ADDED", ev.Kv.Value, "", cp))
				} else if newNode != "" {
					out = append(out, mk(nodeSubject(newNode), typ, data, offset, cp))
				}
			}
		}
		if lastRev >= to { // a revision's changes come in one response
			return out
		}
	}
	f.t.Fatalf("history watch ended before revision %d", to)
	return nil
}

func podNodeOf(t *testing.T, v []byte) string {
	if v == nil {
		return ""
	}
	var p corev1.Pod
	if err := proto.Unmarshal(v, &p); err != nil {
		t.Fatal(err)
	}
	return p.GetSpec().GetNodeName()
}

// selectionDiffers decodes both values: did labels or selectable fields change?
func selectionDiffers(t *testing.T, k *scheme.Kind, a, b []byte) bool {
	oa, ob := k.New(), k.New()
	if err := proto.Unmarshal(a, oa); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(b, ob); err != nil {
		t.Fatal(err)
	}
	return !maps.Equal(scheme.Meta(oa).GetLabels(), scheme.Meta(ob).GetLabels()) ||
		!maps.Equal(k.SelectableFieldSet(oa), k.SelectableFieldSet(ob))
}

// compare checks the stream message by message: subject, id, type, revision, predecessor,
// kind, previous-object offset and payload, and nothing more or less.
func compare(t *testing.T, got, want []msg) {
	t.Helper()
	bad := len(got) != len(want)
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.subject != w.subject || g.id != w.id || g.typ != w.typ || g.rev != w.rev || g.prevRev != w.prevRev ||
			g.kind != w.kind || g.offset != w.offset || !bytes.Equal(g.data, w.data) {
			t.Errorf("message %d differs:\n   got %s\n  want %s", i, g, w)
			bad = true
		}
	}
	if bad {
		t.Errorf("the stream holds:\n%s; etcd's history says:\n%s", list(got), list(want))
	}
}

func pod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels,
		Annotations: map[string]string{"note": "0"}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1"}}}}
}

// metric reads a gauge or counter from the publisher's registry.
func (f *fixture) metric(name string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	f.t.Fatalf("no metric %s", name)
	return 0
}

// logRecorder keeps the publisher's log records (attributes added with With are dropped).
type logRecorder struct {
	mu      sync.Mutex
	records []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, rec)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// find returns the records whose message contains s.
func (l *logRecorder) find(s string) []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logRecord
	for _, r := range l.records {
		if strings.Contains(r.msg, s) {
			out = append(out, r)
		}
	}
	return out
}
