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

func TestRunningInformerFallsBehindRetention(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	pods, _ := scheme.Default().ForName("pods")
	proxy, err := proc.NewProxy(env.NATSURL[len("nats://"):], true)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	nc, _ := nats.Connect("nats://"+proxy.Addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	defer nc.Close()
	js, _ := jetstream.New(nc)
	inf := informer.New(informer.Config{Client: env.Client, JetStream: js, Kind: pods, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inf.Run(rctx)
	informer.WaitForCacheSync(ctx, inf)
	x, _ := env.Client.Create(ctx, testPod("default", "x", 0))
	waitFor(ctx, t, 10*time.Second, "x", func() bool { _, ok := inf.Store().Get("default", "x"); return ok })

	proxy.SetOpen(false) // the informer is partitioned from NATS while running
	zero := int64(0)
	env.Client.Delete(ctx, pods, "default", "x", client.DeleteOptions{GracePeriodSeconds: &zero})
	y, _ := env.Client.Create(ctx, testPod("default", "y", 0))
	nc2, _ := nats.Connect(env.NATSURL)
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	stream, _ := js2.Stream(ctx, bus.StreamName)
	waitFor(ctx, t, 10*time.Second, "publish", func() bool { return lastStreamRevision(ctx, stream) >= rv(y) })
	if err := stream.Purge(ctx); err != nil { // retention runs out while it is away
		t.Fatal(err)
	}
	proxy.SetOpen(true)
	z, _ := env.Client.Create(ctx, testPod("default", "z", 0))
	waitFor(ctx, t, 20*time.Second, "z", func() bool { o, ok := inf.Store().Get("default", "z"); return ok && rv(o) == rv(z) })
	time.Sleep(time.Second)
	_, hasX := inf.Store().Get("default", "x")
	_, hasY := inf.Store().Get("default", "y")
	t.Logf("x (deleted at a revision after %s) still cached: %v; y cached: %v; relists: %d", x.GetMetadata().GetResourceVersion(), hasX, hasY, inf.Relists())
	if hasX || !hasY {
		t.Errorf("informer silently missed changes that aged out while it was disconnected, without relisting")
	}
}
