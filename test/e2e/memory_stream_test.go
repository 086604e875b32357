package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
)

// TestMemoryStreamSurvivesNATSRestart: a NATS restart empties a memory stream. Publishing must
// resume, and a running informer must notice the stream was replaced and relist: a change made
// while NATS was down (the delete of "before") is in no stream, only in a list.
func TestMemoryStreamSurvivesNATSRestart(t *testing.T) {
	c := startCluster(t, "--stream-memory")
	ctx := context.Background()
	pods, _ := scheme.Default().ForName("pods")
	cl := c.newClient(t)
	inf := informer.New(informer.Config{Client: cl, JetStream: c.newJetStream(t), Kind: pods, Logger: fileLogger(t, c.dir+"/inf.log")})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inf.Run(rctx)
	if !informer.WaitForCacheSync(ctx, inf) {
		t.Fatal("informer did not sync")
	}
	createPod(ctx, t, cl, "default", "before")
	waitFor(ctx, t, 10*time.Second, "before", func() bool { _, ok := inf.Store().Get("default", "before"); return ok })
	c.nats.Kill()
	zero := int64(0)
	if _, err := cl.Delete(ctx, pods, "default", "before", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("delete while NATS is down: %v", err)
	}
	if err := c.startNATS(ctx); err != nil {
		t.Fatal(err)
	}
	after := createPod(ctx, t, cl, "default", "after")
	nc, err := nats.Connect(c.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The idle reader notices a replaced stream within its identity check (15-22 s).
	deadline := time.Now().Add(45 * time.Second)
	published := false
	for time.Now().Before(deadline) {
		if s, err := js.Stream(ctx, bus.StreamName); err == nil && lastStreamRevision(ctx, s) >= rv(after) {
			published = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	caughtUp := func() bool {
		a, hasAfter := inf.Store().Get("default", "after")
		_, hasBefore := inf.Store().Get("default", "before")
		return hasAfter && rv(a) == rv(after) && !hasBefore
	}
	for time.Now().Before(deadline) && !caughtUp() {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("after a NATS restart with a memory stream: 'after' published=%v, informer caught up=%v, relists=%d",
		published, caughtUp(), inf.Relists())
	if !published {
		t.Errorf("publishing did not resume after a NATS restart; apiserver log tail:\n%s", c.apiserver.Tail(8))
	}
	if !caughtUp() {
		t.Errorf("informer did not catch up (see 'after', drop 'before') after a NATS restart")
	}
	if inf.Relists() < 1 {
		t.Errorf("relists = %d; want at least 1: the memory stream was replaced", inf.Relists())
	}
	list, err := client.ListAll(ctx, cl, pods, "", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := inf.Store().Len(), len(list.Items); got != want {
		t.Errorf("informer caches %d pods; a fresh list has %d", got, want)
	}
	for _, o := range list.Items {
		if cached, ok := inf.Store().Get(o.GetMetadata().GetNamespace(), o.GetMetadata().GetName()); !ok || rv(cached) != rv(o) {
			t.Errorf("informer's %s differs from the list", o.GetMetadata().GetName())
		}
	}
}
