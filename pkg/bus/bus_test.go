package bus_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
)

func pod(name string) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1"}}}}
}

type seen struct {
	typ  bus.EventType
	name string
	rev  int64
}

// collect subscribes and gathers events until n arrived or 10s passed.
func collect(t *testing.T, js jetstream.JetStream, filters []string, after int64, n int) []seen {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []seen
	errDone := errors.New("done")
	err := bus.NewSubscription(js, scheme.Default()).Run(ctx, filters, after, func(ev bus.Event) error {
		out = append(out, seen{ev.Type, ev.Object.GetMetadata().GetName(), ev.Revision})
		if strconv.FormatInt(ev.Revision, 10) != ev.Object.GetMetadata().GetResourceVersion() {
			t.Errorf("event object resourceVersion %s != revision %d", ev.Object.GetMetadata().GetResourceVersion(), ev.Revision)
		}
		if len(out) == n {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("subscription ended with %v after %d of %d events: %v", err, len(out), n, out)
	}
	return out
}

func TestChangesReachTheBusInOrder(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c := env.Client
	pods, _ := scheme.Default().ForName("pods")

	first, err := c.Create(ctx, pod("a"))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := strconv.ParseInt(first.GetMetadata().ResourceVersion, 10, 64)
	after-- // include a's creation
	if _, err := c.Create(ctx, pod("b")); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(ctx, "default", "b", "node-1"); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if _, err := c.Delete(ctx, pods, "default", "a", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, pods, "default", "b", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}

	js := env.JetStream(t)
	got := collect(t, js, []string{bus.KindFilter(pods, "default")}, after, 5)
	want := []seen{{bus.Added, "a", 0}, {bus.Added, "b", 0}, {bus.Modified, "b", 0}, {bus.Deleted, "a", 0}, {bus.Deleted, "b", 0}}
	for i := range want {
		if got[i].typ != want[i].typ || got[i].name != want[i].name {
			t.Errorf("event %d = %v %s, want %v %s", i, got[i].typ, got[i].name, want[i].typ, want[i].name)
		}
		if i > 0 && got[i].rev <= got[i-1].rev {
			t.Errorf("revisions not increasing: %v", got)
		}
	}

	// The node sees only its pod: b arriving (ADDED) and leaving (DELETED); never a.
	node := collect(t, js, []string{bus.NodeFilter("node-1")}, after, 2)
	if node[0].typ != bus.Added || node[0].name != "b" || node[1].typ != bus.Deleted || node[1].name != "b" {
		t.Errorf("node-1 events = %v; want ADDED b, DELETED b", node)
	}

	// Starting after the last event delivers only what comes next.
	last := got[len(got)-1].rev
	if _, err := c.Create(ctx, pod("c")); err != nil {
		t.Fatal(err)
	}
	next := collect(t, js, []string{bus.KindFilter(pods, "")}, last, 1)
	if next[0].name != "c" || next[0].typ != bus.Added {
		t.Errorf("after %d: %v; want ADDED c", last, next)
	}
}

func TestStartOlderThanRetentionIsTooOld(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := env.Client.Create(ctx, pod("p-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	js := env.JetStream(t)
	pods, _ := scheme.Default().ForName("pods")
	all := collect(t, js, []string{bus.KindFilter(pods, "")}, 0, 5)

	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	// Retention drops the oldest messages; purging them does the same, now.
	info, _ := stream.Info(ctx)
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(info.State.LastSeq-1)); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.StartSequence(ctx, js, stream, all[0].rev); !errors.Is(err, bus.ErrTooOld) {
		t.Errorf("start before the purge: %v; want ErrTooOld", err)
	}
	err = bus.NewSubscription(js, scheme.Default()).Run(ctx, []string{bus.KindFilter(pods, "")}, all[0].rev, func(bus.Event) error { return nil })
	if !errors.Is(err, bus.ErrTooOld) {
		t.Errorf("Run from before the purge: %v; want ErrTooOld", err)
	}
	// From the revision just before the one message left, it is fine.
	if _, err := bus.StartSequence(ctx, js, stream, all[3].rev); err != nil {
		t.Errorf("start covered by the stream: %v", err)
	}
}
