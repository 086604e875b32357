package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/informer"
)

func TestMemoryStreamSurvivesNATSRestart(t *testing.T) {
	c := startCluster(t, "--stream-memory")
	ctx := context.Background()
	pods, _ := scheme.Default().ForName("pods")
	cl := c.newClient(t)
	inf := informer.New(informer.Config{Client: cl, JetStream: c.newJetStream(t), Kind: pods, Logger: fileLogger(t, c.dir+"/inf.log")})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go inf.Run(rctx)
	informer.WaitForCacheSync(ctx, inf)
	createPod(ctx, t, cl, "default", "before")
	waitFor(ctx, t, 10*time.Second, "before", func() bool { _, ok := inf.Store().Get("default", "before"); return ok })
	c.nats.Kill()
	if err := c.startNATS(ctx); err != nil {
		t.Fatal(err)
	}
	after := createPod(ctx, t, cl, "default", "after")
	nc, _ := nats.Connect(c.natsURL)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(20 * time.Second)
	published := false
	for time.Now().Before(deadline) {
		if s, err := js.Stream(ctx, bus.StreamName); err == nil && lastStreamRevision(ctx, s) >= rv(after) {
			published = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	seen := false
	for time.Now().Before(deadline) && !seen {
		_, seen = inf.Store().Get("default", "after")
		time.Sleep(100 * time.Millisecond)
	}
	_, err := js.Stream(ctx, bus.StreamName)
	t.Logf("20s after a NATS restart with a memory stream: stream lookup err=%v, 'after' published=%v, informer saw it=%v, relists=%d",
		err, published, seen, inf.Relists())
	t.Logf("apiserver log tail:\n%s", c.apiserver.Tail(8))
	if !published || !seen {
		t.Error("memory stream: publishing or the informer did not recover after a NATS restart")
	}
}
