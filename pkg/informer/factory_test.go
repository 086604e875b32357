package informer

import (
	"context"
	"fmt"
	"testing"
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
