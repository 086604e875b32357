package informer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

// fixture is a running control plane and a bus connection.
type fixture struct {
	env  *testenv.Env
	js   jetstream.JetStream
	pods *scheme.Kind
}

func start(t *testing.T) *fixture {
	t.Helper()
	env := testenv.Start(t)
	js := env.JetStream(t)
	pods, err := scheme.Default().ForName("pods")
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, js: js, pods: pods}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// informer builds a pod informer; edit may change its Config first.
func (f *fixture) informer(edit func(*Config)) *Informer {
	cfg := Config{Client: f.env.Client, JetStream: f.js, Kind: f.pods, Logger: quietLogger()}
	if edit != nil {
		edit(&cfg)
	}
	return New(cfg)
}

// run runs inf until the test ends (or the returned stop is called) and checks that Run
// returns nil promptly.
func run(t *testing.T, inf *Informer) (stop func()) {
	t.Helper()
	return runWith(t, func(ctx context.Context) error { return inf.Run(ctx) })
}

func runWith(t *testing.T, fn func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return within 10s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitSynced(t *testing.T, infs ...*Informer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if !WaitForCacheSync(ctx, infs...) {
		t.Fatal("informers did not sync in 15s")
	}
}

// eventually polls cond until it returns nil, failing the test with its last error after 15s.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func podObj(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1"}}}}
}

func (f *fixture) createNamespace(t *testing.T, name string) {
	t.Helper()
	if _, err := f.env.Client.Create(context.Background(), &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) createPod(t testing.TB, ns, name string, labels map[string]string) scheme.Object {
	t.Helper()
	obj, err := f.env.Client.Create(context.Background(), podObj(ns, name, labels))
	if err != nil {
		t.Fatalf("create %s/%s: %v", ns, name, err)
	}
	return obj
}

// relabel sets label k=v on a pod and returns the stored result.
func (f *fixture) relabel(t testing.TB, ns, name, k, v string) scheme.Object {
	t.Helper()
	ctx := context.Background()
	cur, err := f.env.Client.Get(ctx, f.pods, ns, name)
	if err != nil {
		t.Fatalf("get %s/%s: %v", ns, name, err)
	}
	next := proto.Clone(cur).(scheme.Object)
	md := scheme.Meta(next)
	if md.Labels == nil {
		md.Labels = map[string]string{}
	}
	md.Labels[k] = v
	out, err := f.env.Client.Update(ctx, next)
	if err != nil {
		t.Fatalf("update %s/%s: %v", ns, name, err)
	}
	return out
}

func (f *fixture) deletePod(t testing.TB, ns, name string, grace *int64) {
	t.Helper()
	if _, err := f.env.Client.Delete(context.Background(), f.pods, ns, name, client.DeleteOptions{GracePeriodSeconds: grace}); err != nil {
		t.Fatalf("delete %s/%s: %v", ns, name, err)
	}
}

func zero() *int64 { z := int64(0); return &z }

// matchesList checks that objs equal, one by one, a fresh list from the apiserver.
func (f *fixture) matchesList(objs []scheme.Object, ns string, opts client.ListOptions) error {
	list, err := client.ListAll(context.Background(), f.env.Client, f.pods, ns, opts)
	if err != nil {
		return err
	}
	want := map[string]scheme.Object{}
	for _, o := range list.Items {
		want[KeyOf(o)] = o
	}
	got := map[string]scheme.Object{}
	for _, o := range objs {
		got[KeyOf(o)] = o
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			return fmt.Errorf("cache lacks %s (of %d listed, %d cached)", k, len(want), len(got))
		}
		if !proto.Equal(g, w) {
			return fmt.Errorf("cache has %s at resourceVersion %s, the list at %s (or they differ)", k,
				g.GetMetadata().GetResourceVersion(), w.GetMetadata().GetResourceVersion())
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			return fmt.Errorf("cache has %s, which the list does not", k)
		}
	}
	return nil
}

// event is one handler call as a recorder saw it.
type event struct {
	typ      string // add, update, delete
	key      string
	rv       int64 // of obj (the new object of an update)
	oldRV    int64 // updates only
	obj, old scheme.Object
}

func (e event) String() string {
	if e.typ == "update" {
		return fmt.Sprintf("update %s %d->%d", e.key, e.oldRV, e.rv)
	}
	return fmt.Sprintf("%s %s@%d", e.typ, e.key, e.rv)
}

// recorder records handler calls.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) OnAdd(obj scheme.Object) {
	r.add(event{typ: "add", key: KeyOf(obj), rv: resourceVersion(obj), obj: obj})
}

func (r *recorder) OnUpdate(oldObj, newObj scheme.Object) {
	r.add(event{typ: "update", key: KeyOf(newObj), rv: resourceVersion(newObj), oldRV: resourceVersion(oldObj),
		obj: newObj, old: oldObj})
}

func (r *recorder) OnDelete(obj scheme.Object) {
	r.add(event{typ: "delete", key: KeyOf(obj), rv: resourceVersion(obj), obj: obj})
}

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// strings renders the events without revisions, for comparing sequences.
func (r *recorder) strings() []string {
	var out []string
	for _, e := range r.snapshot() {
		out = append(out, e.typ+" "+e.key)
	}
	return out
}

// waitFor waits until the recorder holds exactly want (as strings()).
func (r *recorder) waitFor(t *testing.T, want ...string) []event {
	t.Helper()
	eventually(t, "handler events", func() error {
		got := r.strings()
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	})
	return r.snapshot()
}

// mirror rebuilds the cache from handler calls alone and checks the delivery guarantees on
// the way: an add only for an unknown object, an update's old object is the one last
// delivered and its revision grows, a delete only for a known object.
type mirror struct {
	mu       sync.Mutex
	objs     map[string]scheme.Object
	problems []string
	calls    int
}

func newMirror() *mirror { return &mirror{objs: map[string]scheme.Object{}} }

func (m *mirror) OnAdd(obj scheme.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	k := KeyOf(obj)
	if _, ok := m.objs[k]; ok {
		m.problems = append(m.problems, "add of known "+k)
	}
	m.objs[k] = obj
}

func (m *mirror) OnUpdate(oldObj, newObj scheme.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	k := KeyOf(newObj)
	cur, ok := m.objs[k]
	switch {
	case !ok:
		m.problems = append(m.problems, "update of unknown "+k)
	case cur != oldObj:
		m.problems = append(m.problems, fmt.Sprintf("update of %s: old is at %d, last delivered at %d", k,
			resourceVersion(oldObj), resourceVersion(cur)))
	case resourceVersion(newObj) <= resourceVersion(oldObj):
		m.problems = append(m.problems, fmt.Sprintf("update of %s goes from %d to %d", k,
			resourceVersion(oldObj), resourceVersion(newObj)))
	}
	m.objs[k] = newObj
}

func (m *mirror) OnDelete(obj scheme.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	k := KeyOf(obj)
	cur, ok := m.objs[k]
	switch {
	case !ok:
		m.problems = append(m.problems, "delete of unknown "+k)
	case resourceVersion(obj) < resourceVersion(cur):
		m.problems = append(m.problems, fmt.Sprintf("delete of %s at %d, older than %d", k, resourceVersion(obj), resourceVersion(cur)))
	}
	delete(m.objs, k)
}

// check reports broken guarantees and whether the mirror equals the store.
func (m *mirror) check(s *Store) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.problems) > 0 {
		return fmt.Errorf("handler guarantees broken: %q", m.problems)
	}
	objs := s.List()
	if len(objs) != len(m.objs) {
		return fmt.Errorf("handlers know %d objects, the store holds %d", len(m.objs), len(objs))
	}
	for _, o := range objs {
		if m.objs[KeyOf(o)] != o {
			return fmt.Errorf("handlers' %s is not the cached one", KeyOf(o))
		}
	}
	return nil
}

func keys(objs []scheme.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = KeyOf(o)
	}
	return out
}
