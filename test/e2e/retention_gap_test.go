package e2e

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/test/e2e/internal/proc"
)

// TestRunningInformerFallsBehindRetention partitions a running informer from NATS, changes
// things, lets retention drop those changes (a purge) and reconnects it: the informer must
// notice what it missed and relist, not carry on from the next message.
func TestRunningInformerFallsBehindRetention(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	pods, _ := scheme.Default().ForName("pods")
	proxy, err := proc.NewProxy(env.NATSURL[len("nats://"):], true)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	nc, err := nats.Connect("nats://"+proxy.Addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	inf := informer.New(informer.Config{Client: env.Client, JetStream: js, Kind: pods, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inf.Run(rctx)
	if !informer.WaitForCacheSync(ctx, inf) {
		t.Fatal("informer did not sync")
	}
	x, err := env.Client.Create(ctx, testPod("default", "x", 0))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, 10*time.Second, "x", func() bool { _, ok := inf.Store().Get("default", "x"); return ok })

	proxy.SetOpen(false) // the informer is partitioned from NATS while running
	zero := int64(0)
	if _, err := env.Client.Delete(ctx, pods, "default", "x", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	y, err := env.Client.Create(ctx, testPod("default", "y", 0))
	if err != nil {
		t.Fatal(err)
	}
	nc2, err := nats.Connect(env.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js2.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, 10*time.Second, "publish", func() bool { return lastStreamRevision(ctx, stream) >= rv(y) })
	// The partition holds: the informer has not seen what the stream now holds.
	if _, ok := inf.Store().Get("default", "x"); !ok {
		t.Fatal("setup: the informer saw x's delete while partitioned")
	}
	if err := stream.Purge(ctx); err != nil { // retention runs out while it is away
		t.Fatal(err)
	}
	proxy.SetOpen(true)
	z, err := env.Client.Create(ctx, testPod("default", "z", 0))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, 30*time.Second, "z", func() bool { o, ok := inf.Store().Get("default", "z"); return ok && rv(o) == rv(z) })
	_, hasX := inf.Store().Get("default", "x")
	_, hasY := inf.Store().Get("default", "y")
	t.Logf("x (deleted at a revision after %s) still cached: %v; y cached: %v; relists: %d", x.GetMetadata().GetResourceVersion(), hasX, hasY, inf.Relists())
	if hasX || !hasY {
		t.Errorf("informer silently missed changes that aged out while it was disconnected, without relisting")
	}
	if inf.Relists() < 1 {
		t.Errorf("relists = %d; want at least 1 (the purged changes can only be learnt from a list)", inf.Relists())
	}
}
