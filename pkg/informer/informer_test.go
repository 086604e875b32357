package informer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

func TestInitialListThenLiveEvents(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	a := f.createPod(t, "default", "a", nil)
	b := f.createPod(t, "default", "b", nil)

	inf := f.informer(nil)
	rec := &recorder{}
	inf.AddEventHandler(rec) // before Run: it gets the initial list
	if inf.HasSynced() {
		t.Fatal("HasSynced before Run")
	}
	run(t, inf)
	waitSynced(t, inf)
	// Synced means the handlers were told already: no waiting.
	if got, want := rec.strings(), []string{"add default/a", "add default/b"}; !slices.Equal(got, want) {
		t.Fatalf("at sync, handlers got %q; want %q", got, want)
	}
	if inf.LastRevision() < resourceVersion(b) {
		t.Errorf("LastRevision %d < b's revision %d", inf.LastRevision(), resourceVersion(b))
	}
	if got, ok := inf.Store().Get("default", "a"); !ok || !proto.Equal(got, a) {
		t.Errorf("Store().Get(a) = %v, %v; want the created pod", got, ok)
	}

	a2 := f.relabel(t, "default", "a", "tier", "web")
	f.deletePod(t, "default", "b", zero())
	c := f.createPod(t, "default", "c", nil)

	evs := rec.waitFor(t, "add default/a", "add default/b", "update default/a", "delete default/b", "add default/c")
	upd := evs[2]
	if upd.oldRV != resourceVersion(a) || upd.rv != resourceVersion(a2) {
		t.Errorf("update of a: %v; want %d->%d", upd, resourceVersion(a), resourceVersion(a2))
	}
	if upd.old.GetMetadata().GetLabels()["tier"] != "" || upd.obj.GetMetadata().GetLabels()["tier"] != "web" {
		t.Errorf("update of a: old labels %v, new labels %v", upd.old.GetMetadata().GetLabels(), upd.obj.GetMetadata().GetLabels())
	}
	if del := evs[3]; del.obj.GetMetadata().GetName() != "b" || del.rv <= resourceVersion(a2) || del.rv >= resourceVersion(c) {
		t.Errorf("delete of b: %v (a updated at %d, c created at %d)", del, resourceVersion(a2), resourceVersion(c))
	}
	if !proto.Equal(evs[4].obj, c) {
		t.Errorf("add of c: %v; want %v", evs[4].obj, c)
	}
	if inf.LastRevision() != resourceVersion(c) {
		t.Errorf("LastRevision = %d; want c's creation at %d", inf.LastRevision(), resourceVersion(c))
	}
	if err := f.matchesList(inf.Store().List(), "", client.ListOptions{}); err != nil {
		t.Error(err)
	}
	if _, ok := inf.Store().Get("default", "b"); ok {
		t.Error("deleted b is still cached")
	}
	if n := inf.Store().Len(); n != 2 {
		t.Errorf("Len = %d; want 2", n)
	}
	if err := inf.Run(ctx); err == nil {
		t.Error("a second Run returned nil; want an error")
	}
}

func TestCacheMatchesListAfterConcurrentBurst(t *testing.T) {
	f := start(t)
	namespaces := []string{"burst-a", "burst-b"}
	for _, ns := range namespaces {
		f.createNamespace(t, ns)
	}
	// Some objects before the informers start, so the burst also updates and deletes listed ones.
	for i := range 6 {
		f.createPod(t, namespaces[i%2], fmt.Sprintf("w%d-p%d", i%4, i), nil)
	}

	all := f.informer(nil)
	allMirror := newMirror()
	all.AddEventHandler(allMirror)
	oneNS := f.informer(func(c *Config) { c.Namespace = "burst-a" })
	nsMirror := newMirror()
	oneNS.AddEventHandler(nsMirror)
	run(t, all)
	run(t, oneNS)
	waitSynced(t, all, oneNS)

	const workers, ops = 4, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			exists := map[string]string{} // name → namespace
			for i := range 6 {
				if i%4 == w {
					exists[fmt.Sprintf("w%d-p%d", w, i)] = namespaces[i%2]
				}
			}
			for op := range ops {
				name := fmt.Sprintf("w%d-p%d", w, rng.IntN(8))
				ns, ok := exists[name]
				switch {
				case !ok:
					ns = namespaces[rng.IntN(2)]
					f.createPod(t, ns, name, map[string]string{"worker": fmt.Sprint(w)})
					exists[name] = ns
				case rng.IntN(3) == 0:
					f.deletePod(t, ns, name, zero())
					delete(exists, name)
				default:
					f.relabel(t, ns, name, "op", fmt.Sprint(op))
				}
			}
		})
	}
	wg.Wait()

	eventually(t, "all-namespace cache equals a fresh list", func() error {
		return f.matchesList(all.Store().List(), "", client.ListOptions{})
	})
	eventually(t, "burst-a cache equals a fresh list of burst-a", func() error {
		return f.matchesList(oneNS.Store().List(), "burst-a", client.ListOptions{})
	})
	if err := allMirror.check(all.Store()); err != nil {
		t.Error("all namespaces:", err)
	}
	if err := nsMirror.check(oneNS.Store()); err != nil {
		t.Error("burst-a:", err)
	}
	byNS, err := all.Store().ByIndex(NamespaceIndex, "burst-a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keys(byNS), keys(oneNS.Store().List()); !slices.Equal(got, want) {
		t.Errorf("ByIndex(namespace, burst-a) = %q; the burst-a informer holds %q", got, want)
	}
	if all.Relists() != 0 {
		t.Errorf("Relists = %d; want 0", all.Relists())
	}
	t.Logf("handlers saw %d changes across all namespaces", allMirror.calls)
}

func TestIndexes(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	f.createNamespace(t, "idx-a")
	f.createNamespace(t, "idx-b")
	f.createPod(t, "idx-a", "p1", map[string]string{"app": "web"})
	f.createPod(t, "idx-a", "p2", map[string]string{"app": "db"})
	f.createPod(t, "idx-b", "p3", map[string]string{"app": "web"})
	f.createPod(t, "idx-b", "p4", nil)

	inf := f.informer(func(c *Config) {
		c.Indexers = Indexers{"node": FieldIndexFunc("spec.nodeName"), "app": LabelIndexFunc("app")}
	})
	run(t, inf)
	waitSynced(t, inf)

	byIndex := func(index, value string) []string {
		t.Helper()
		objs, err := inf.Store().ByIndex(index, value)
		if err != nil {
			t.Fatal(err)
		}
		return keys(objs)
	}
	expect := func(index, value string, want ...string) {
		t.Helper()
		eventually(t, fmt.Sprintf("ByIndex(%s, %q)", index, value), func() error {
			if got := byIndex(index, value); !slices.Equal(got, want) {
				return fmt.Errorf("got %q, want %q", got, want)
			}
			return nil
		})
	}
	expect(NamespaceIndex, "idx-a", "idx-a/p1", "idx-a/p2")
	expect(NamespaceIndex, "idx-b", "idx-b/p3", "idx-b/p4")
	expect("app", "web", "idx-a/p1", "idx-b/p3")
	expect("app", "db", "idx-a/p2")
	expect("node", "", "idx-a/p1", "idx-a/p2", "idx-b/p3", "idx-b/p4") // unbound pods

	// Binding moves pods between values of the node index.
	if err := f.env.Client.Bind(ctx, "idx-a", "p1", "node-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.env.Client.Bind(ctx, "idx-b", "p3", "node-2"); err != nil {
		t.Fatal(err)
	}
	if err := f.env.Client.Bind(ctx, "idx-b", "p4", "node-1"); err != nil {
		t.Fatal(err)
	}
	expect("node", "node-1", "idx-a/p1", "idx-b/p4")
	expect("node", "node-2", "idx-b/p3")
	expect("node", "", "idx-a/p2")

	// Relabeling and deleting update the indexes too.
	f.relabel(t, "idx-a", "p2", "app", "web")
	f.deletePod(t, "idx-a", "p1", zero())
	expect("app", "web", "idx-a/p2", "idx-b/p3")
	expect("app", "db")
	expect("node", "node-1", "idx-b/p4")
	expect(NamespaceIndex, "idx-a", "idx-a/p2")

	if _, err := inf.Store().ByIndex("no-such-index", "x"); err == nil {
		t.Error("ByIndex of an unknown index: no error")
	}
}

func TestIndexFuncs(t *testing.T) {
	p := podObj("ns", "p", map[string]string{"app": "web"})
	p.Spec.NodeName = "n1"
	p.Spec.Priority = proto.Int32(7)
	for _, tc := range []struct {
		fn   IndexFunc
		want []string
	}{
		{MetaNamespaceIndexFunc, []string{"ns"}},
		{LabelIndexFunc("app"), []string{"web"}},
		{LabelIndexFunc("missing"), nil},
		{FieldIndexFunc("spec.nodeName"), []string{"n1"}},
		{FieldIndexFunc("metadata.name"), []string{"p"}},
		{FieldIndexFunc("spec.priority"), []string{"7"}},
		{FieldIndexFunc("status.phase"), []string{""}}, // unset message: the zero value
	} {
		got, err := tc.fn(p)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("index of %v = %q, %v; want %q", p, got, err, tc.want)
		}
	}
	for _, path := range []string{"spec.noSuchField", "spec", "spec.containers", "metadata.labels", "spec.nodeName.x", ""} {
		if got, err := FieldIndexFunc(path)(p); err == nil {
			t.Errorf("FieldIndexFunc(%q) = %q; want an error", path, got)
		}
	}
	if ns, name := SplitKey(KeyOf(p)); ns != "ns" || name != "p" {
		t.Errorf("SplitKey(KeyOf) = %q, %q", ns, name)
	}
	if ns, name := SplitKey("node-1"); ns != "" || name != "node-1" {
		t.Errorf("SplitKey(node-1) = %q, %q", ns, name)
	}

	// New refuses a field path the kind does not have, at once.
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "spec.nodename") {
			t.Errorf("New with a bad field index path: panic %v; want one naming the path", r)
		}
	}()
	New(Config{Client: fakeClient{}, JetStream: nilJetStream{}, Kind: mustKind(t, "pods"),
		Indexers: Indexers{"x": FieldIndexFunc("spec.nodename")}})
}

func TestNodeScopedInformer(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	f.createNamespace(t, "nodens")
	f.createPod(t, "default", "a", nil)
	f.createPod(t, "default", "b", nil)
	f.createPod(t, "default", "c", nil)
	f.createPod(t, "nodens", "e", nil)
	for _, bind := range [][3]string{{"default", "b", "node-1"}, {"default", "c", "node-2"}, {"nodens", "e", "node-1"}} {
		if err := f.env.Client.Bind(ctx, bind[0], bind[1], bind[2]); err != nil {
			t.Fatal(err)
		}
	}

	node := f.informer(func(c *Config) { c.NodeName = "node-1" })
	rec := &recorder{}
	node.AddEventHandler(rec)
	nodeNS := f.informer(func(c *Config) { c.NodeName = "node-1"; c.Namespace = "nodens" })
	nsRec := &recorder{}
	nodeNS.AddEventHandler(nsRec)
	run(t, node)
	run(t, nodeNS)
	waitSynced(t, node, nodeNS)
	if got, want := rec.strings(), []string{"add default/b", "add nodens/e"}; !slices.Equal(got, want) {
		t.Fatalf("node-1 at sync: %q; want %q", got, want)
	}

	// a arrives on node-1 by its binding; d goes to node-2 and is never seen.
	if err := f.env.Client.Bind(ctx, "default", "a", "node-1"); err != nil {
		t.Fatal(err)
	}
	f.createPod(t, "default", "d", nil)
	if err := f.env.Client.Bind(ctx, "default", "d", "node-2"); err != nil {
		t.Fatal(err)
	}
	// A graceful delete first marks b (an update), the node's confirmation removes it.
	f.deletePod(t, "default", "b", nil)
	f.deletePod(t, "default", "b", zero())

	evs := rec.waitFor(t, "add default/b", "add nodens/e", "add default/a", "update default/b", "delete default/b")
	if evs[3].obj.GetMetadata().GetDeletionTimestamp() == "" {
		t.Errorf("graceful delete: update without a deletionTimestamp: %v", evs[3].obj)
	}
	if got, want := keys(node.Store().List()), []string{"default/a", "nodens/e"}; !slices.Equal(got, want) {
		t.Errorf("node-1 cache = %q; want %q", got, want)
	}
	if err := f.matchesList(node.Store().List(), "", client.ListOptions{FieldSelector: "spec.nodeName=node-1"}); err != nil {
		t.Error(err)
	}
	// The namespaced node informer saw its one pod only, though its subjects span namespaces.
	if got, want := nsRec.strings(), []string{"add nodens/e"}; !slices.Equal(got, want) {
		t.Errorf("node-1 in nodens: %q; want %q", got, want)
	}
}

func TestHandlerAddedLater(t *testing.T) {
	f := start(t)
	f.createPod(t, "default", "x", nil)
	f.createPod(t, "default", "y", nil)
	inf := f.informer(nil)
	stop := run(t, inf)
	waitSynced(t, inf)

	// Added to a synced, running informer: the cache first, then what follows.
	late := &recorder{}
	inf.AddEventHandler(late)
	late.waitFor(t, "add default/x", "add default/y")
	lateMirror := newMirror()
	inf.AddEventHandler(lateMirror)
	f.createPod(t, "default", "z", nil)
	late.waitFor(t, "add default/x", "add default/y", "add default/z")
	eventually(t, "late mirror", func() error { return lateMirror.check(inf.Store()) })

	// Added after Run returned: the cache is replayed at once.
	stop()
	after := &recorder{}
	inf.AddEventHandler(after)
	if got, want := after.strings(), []string{"add default/x", "add default/y", "add default/z"}; !slices.Equal(got, want) {
		t.Errorf("handler added after Run: %q; want %q", got, want)
	}
}

func TestWaitForCacheSync(t *testing.T) {
	f := start(t)
	idle := f.informer(nil) // never runs, so never syncs
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if WaitForCacheSync(ctx, idle) {
		t.Error("WaitForCacheSync = true for an informer that never ran")
	}

	running := f.informer(nil)
	run(t, running)
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if WaitForCacheSync(cancelled, running, idle) {
		t.Error("WaitForCacheSync = true with a cancelled context and an idle informer")
	}
	waitSynced(t, running)
	if !WaitForCacheSync(cancelled, running) {
		t.Error("WaitForCacheSync = false for a synced informer")
	}
}

func mustKind(t *testing.T, name string) *scheme.Kind {
	t.Helper()
	k, err := scheme.Default().ForName(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
