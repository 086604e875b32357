package informer

import (
	"context"
	"fmt"
	"testing"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
)

// Controllers in one process share one informer per view; an index added after the cache
// filled indexes what it already holds, and later changes too.
func TestFactorySharesInformers(t *testing.T) {
	f := start(t)
	f.createPod(t, "default", "a", map[string]string{"app": "web"})
	f.createPod(t, "default", "b", map[string]string{"app": "db"})

	factory := NewFactory(f.env.Client, f.js, quietLogger())
	first, second := factory.For(f.pods), factory.For(f.pods)
	if first != second {
		t.Fatal("two requests for the same kind got two informers")
	}
	if factory.ForNamespace(f.pods, "default") == first || factory.ForNode(f.pods, "n1") == first {
		t.Fatal("different views share an informer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx)
	factory.Start(ctx) // starting twice must not run an informer twice
	defer func() { cancel(); factory.Shutdown() }()
	if !factory.WaitForCacheSync(ctx) {
		t.Fatal("not synced")
	}
	if err := first.Store().AddIndexers(Indexers{"app": LabelIndexFunc("app")}); err != nil {
		t.Fatal(err)
	}
	if err := first.Store().AddIndexers(Indexers{"app": LabelIndexFunc("app")}); err == nil {
		t.Fatal("adding an index twice was accepted")
	}
	f.createPod(t, "default", "c", map[string]string{"app": "web"})
	eventually(t, "index follows old and new pods", func() error {
		web, err := first.Store().ByIndex("app", "web")
		if err != nil {
			return err
		}
		if len(web) != 2 {
			return fmt.Errorf("app=web holds %d pods; want 2", len(web))
		}
		return nil
	})
}

// Informers of one kind and view sharing a Live share its feed: one NATS subscription and
// one decode of each change per view, however many informers follow it. A Factory's
// informers share one Live.
func TestInformersShareLiveFeed(t *testing.T) {
	f := start(t)
	live := bus.NewLive(f.js, scheme.Default())
	var infs []*Informer
	for range 3 {
		infs = append(infs, f.informer(func(c *Config) { c.Live = live }))
	}
	for range 2 {
		infs = append(infs, f.informer(func(c *Config) { c.Live = live; c.Namespace = "default" }))
	}
	for _, inf := range infs {
		run(t, inf)
	}
	ctx := context.Background()
	if !WaitForCacheSync(ctx, infs...) {
		t.Fatal("not synced")
	}
	for i := range 5 {
		f.createPod(t, "default", fmt.Sprintf("p%d", i), nil)
	}
	eventually(t, "every informer has the pods", func() error {
		for i, inf := range infs {
			if n := len(inf.Store().List()); n != 5 {
				return fmt.Errorf("informer %d holds %d pods; want 5", i, n)
			}
		}
		return nil
	})
	s := live.Stats()
	if s.Feeds != 2 {
		t.Errorf("%d feeds for 2 views; want 2 (stats %+v)", s.Feeds, s)
	}
	// Each feed decodes a change at most once (a change it repaired from the stream is
	// decoded there instead).
	if s.Decodes > 2*5 {
		t.Errorf("%d live decodes of 5 changes in 2 views; want at most 10 (stats %+v)", s.Decodes, s)
	}

	factory := NewFactory(f.env.Client, f.js, quietLogger())
	if factory.Live() == nil {
		t.Fatal("factory without a Live")
	}
	fctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); factory.Shutdown() }()
	all, ns := factory.For(f.pods), factory.ForNamespace(f.pods, "default")
	factory.Start(fctx)
	if !factory.WaitForCacheSync(fctx) {
		t.Fatal("factory not synced")
	}
	f.createPod(t, "default", "late", nil)
	eventually(t, "factory informers see the pod", func() error {
		for _, inf := range []*Informer{all, ns} {
			if _, ok := inf.Store().Get("default", "late"); !ok {
				return fmt.Errorf("missing")
			}
		}
		return nil
	})
	if n := factory.Live().Stats().Feeds; n != 2 {
		t.Errorf("factory's Live runs %d feeds for its 2 informers' views; want 2", n)
	}
}
