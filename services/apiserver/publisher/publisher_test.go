package publisher_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/services/apiserver/publisher"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// A publisher that crashed between two changes of one revision (one etcd transaction, as a
// namespace delete is) must publish the rest after it restarts: message ids number changes
// within their revision, whatever watch responses they arrived in.
func TestPublisherResumesMidRevision(t *testing.T) {
	_, etcd := testenv.Etcd(t)
	n := testenv.NATS(t)
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c"} {
		v, _ := storage.Encode(pod(name))
		if _, err := etcd.Put(ctx, "/registry/pods/default/"+name, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	// One transaction deletes b and c: one revision, two events (as a namespace delete does).
	if _, err := etcd.Txn(ctx).Then(clientv3.OpDelete("/registry/pods/default/b"), clientv3.OpDelete("/registry/pods/default/c")).Commit(); err != nil {
		t.Fatal(err)
	}
	nc, _ := nats.Connect(n.URL)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	run := func(d time.Duration) {
		p, err := publisher.New(ctx, publisher.Config{Etcd: etcd, NATS: nc, Scheme: scheme.Default(), Prefix: "/registry",
			Stream: bus.DefaultStreamConfig(), Identity: "x", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_ = p.Run(rctx)
	}
	dump := func() []*jetstream.RawStreamMsg {
		s, _ := js.Stream(ctx, bus.StreamName)
		info, _ := s.Info(ctx)
		var out []*jetstream.RawStreamMsg
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			out = append(out, m)
			t.Logf("  seq %d %s id=%s type=%s", seq, m.Subject, m.Header.Get("Nats-Msg-Id"), m.Header.Get(bus.HeaderType))
		}
		return out
	}
	run(2 * time.Second)
	t.Log("what an uninterrupted publisher wrote:")
	full := dump()

	// A crash after the stream acknowledged b's deletion but before c's: the stream holds
	// the first four messages, exactly as the publisher wrote them.
	if err := js.DeleteStream(ctx, bus.StreamName); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.EnsureStream(ctx, js, bus.DefaultStreamConfig()); err != nil {
		t.Fatal(err)
	}
	for _, m := range full[:len(full)-1] {
		msg := nats.NewMsg(m.Subject)
		msg.Header, msg.Data = m.Header, m.Data
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	run(2 * time.Second)
	t.Log("after the crash and a resumed publisher:")
	got := dump()
	if len(got) != len(full) {
		t.Errorf("stream holds %d messages after the resume; an uninterrupted publisher wrote %d", len(got), len(full))
	}
}

// A publisher whose start point etcd has compacted away publishes from the compaction
// revision on, and marks the lost span so that readers from before it relist.
func TestPublisherAfterCompaction(t *testing.T) {
	_, etcd := testenv.Etcd(t)
	n := testenv.NATS(t)
	ctx := context.Background()
	var last int64
	for _, name := range []string{"a", "b", "c"} {
		v, _ := storage.Encode(pod(name))
		resp, err := etcd.Put(ctx, "/registry/pods/default/"+name, string(v))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	if _, err := etcd.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	p, err := publisher.New(ctx, publisher.Config{Etcd: etcd, NATS: nc, Scheme: scheme.Default(), Prefix: "/registry",
		Stream: bus.DefaultStreamConfig(), Identity: "x", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = p.Run(rctx)

	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := stream.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages; want 1 (the change at the compaction revision)", info.State.Msgs)
	}
	m, err := stream.GetMsg(ctx, info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(bus.HeaderRevision); got != strconv.FormatInt(last, 10) {
		t.Errorf("first message revision %s, want %d", got, last)
	}
	if _, err := bus.StartSequence(ctx, js, stream, 1); !errors.Is(err, bus.ErrTooOld) {
		t.Errorf("start before the compaction: %v; want ErrTooOld", err)
	}
	if _, err := bus.StartSequence(ctx, js, stream, last-1); err != nil {
		t.Errorf("start just before the compaction revision: %v; want covered", err)
	}
}

func pod(name string) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1"}}}}
}
