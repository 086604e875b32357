package informer

// These tests reach into the informer (its run loop and subscription seam) to force what is
// hard to cause from outside on demand: a start point the bus no longer holds, and bus and
// apiserver failures at chosen moments.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
)

// TestRelistWhenBusTooOld stops a synced informer, changes things while it is away, purges
// those changes from the stream (as retention would), and resumes the informer from its last
// revision: the bus answers ErrTooOld, the informer relists, and its handlers learn the
// difference.
func TestRelistWhenBusTooOld(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	for i := range 5 {
		f.createPod(t, "default", fmt.Sprintf("r-%d", i), nil)
	}
	inf := f.informer(nil)
	rec := &recorder{}
	m := newMirror()
	inf.AddEventHandler(rec)
	inf.AddEventHandler(m)
	stop := run(t, inf)
	waitSynced(t, inf)
	rec.waitFor(t, "add default/r-0", "add default/r-1", "add default/r-2", "add default/r-3", "add default/r-4")
	stop()
	stale := inf.LastRevision()

	// While it is away: an update, a delete, two creates.
	f.relabel(t, "default", "r-0", "v", "2")
	f.deletePod(t, "default", "r-1", zero())
	f.createPod(t, "default", "r-5", nil)
	last := resourceVersion(f.createPod(t, "default", "r-6", nil))

	// Wait for the publisher to have put the last change on the stream, then purge all but
	// that one message: what the informer missed is gone.
	stream, err := f.js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var lastSeq uint64
	eventually(t, "publisher caught up", func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		msg, err := stream.GetMsg(ctx, info.State.LastSeq)
		if err != nil {
			return err
		}
		if rev, _ := strconv.ParseInt(msg.Header.Get(bus.HeaderRevision), 10, 64); rev < last {
			return fmt.Errorf("stream at revision %d, want %d", rev, last)
		}
		lastSeq = info.State.LastSeq
		return nil
	})
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(lastSeq)); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.StartSequence(ctx, f.js, stream, stale); !errors.Is(err, bus.ErrTooOld) {
		t.Fatalf("setup: start after %d = %v; want ErrTooOld", stale, err)
	}

	// Resume without listing, as after a bus failure.
	runWith(t, func(ctx context.Context) error { return inf.run(ctx, false) })
	rec.waitFor(t, "add default/r-0", "add default/r-1", "add default/r-2", "add default/r-3", "add default/r-4",
		"delete default/r-1", "update default/r-0", "add default/r-5", "add default/r-6")
	if got := inf.Relists(); got != 1 {
		t.Errorf("Relists = %d; want 1", got)
	}
	if err := f.matchesList(inf.Store().List(), "", client.ListOptions{}); err != nil {
		t.Error(err)
	}
	if inf.LastRevision() < last {
		t.Errorf("LastRevision after the relist = %d; want ≥ %d", inf.LastRevision(), last)
	}

	// And it follows the bus again from the list.
	f.createPod(t, "default", "r-7", nil)
	rec.waitFor(t, "add default/r-0", "add default/r-1", "add default/r-2", "add default/r-3", "add default/r-4",
		"delete default/r-1", "update default/r-0", "add default/r-5", "add default/r-6", "add default/r-7")
	if err := m.check(inf.Store()); err != nil {
		t.Error(err)
	}
}

// TestResumesAfterFailures fails the list twice, the bus subscription at once, then after
// every few events, and once between two events of the same revision (a namespace's pods
// deleted in one etcd transaction: the API no longer writes several objects at once, but the
// bus carries whatever etcd commits). The informer must neither lose nor repeat a change, and
// must not relist.
func TestResumesAfterFailures(t *testing.T) {
	f := start(t)
	f.createNamespace(t, "multi")
	for i := range 3 {
		f.createPod(t, "multi", fmt.Sprintf("m-%d", i), nil)
	}
	f.createPod(t, "default", "d-0", nil)

	flaky := &flakyClient{Interface: f.env.Client}
	flaky.listFailures.Store(2)
	inf := f.informer(func(c *Config) { c.Client = flaky })
	m := newMirror()
	inf.AddEventHandler(m)

	injected := errors.New("injected bus failure")
	var calls, delivered atomic.Int64
	var failedMidRevision atomic.Bool
	real := inf.subscribe
	inf.subscribe = func(ctx context.Context, filters []string, after int64, handle func(bus.Event) error) error {
		if calls.Add(1) == 1 {
			return errors.New("injected: NATS unreachable")
		}
		return real(ctx, filters, after, func(ev bus.Event) error {
			if err := handle(ev); err != nil {
				return err
			}
			if ev.Type == bus.Deleted && ev.Object.GetMetadata().GetNamespace() == "multi" &&
				failedMidRevision.CompareAndSwap(false, true) {
				return injected // after the first of the namespace's deletes
			}
			if delivered.Add(1)%4 == 0 {
				return injected
			}
			return nil
		})
	}
	run(t, inf)
	waitSynced(t, inf)
	if n := flaky.lists.Load(); n < 3 {
		t.Errorf("%d list calls; want the 2 failures and a success", n)
	}

	for i := range 10 {
		name := fmt.Sprintf("d-%d", i+1)
		f.createPod(t, "default", name, nil)
		f.relabel(t, "default", name, "step", "1")
		if i%3 == 0 {
			f.deletePod(t, "default", name, zero())
		}
	}
	f.relabel(t, "multi", "m-0", "step", "1")
	if _, err := f.env.Etcd.Txn(context.Background()).Then(clientv3.OpDelete("/registry/pods/multi/", clientv3.WithPrefix())).Commit(); err != nil {
		t.Fatal(err)
	}
	f.createPod(t, "default", "after", nil)

	eventually(t, "cache equals a fresh list", func() error {
		return f.matchesList(inf.Store().List(), "", client.ListOptions{})
	})
	if err := m.check(inf.Store()); err != nil {
		t.Error(err)
	}
	if !failedMidRevision.Load() {
		t.Error("the namespace's deletes never arrived")
	}
	for _, k := range keys(inf.Store().List()) {
		if strings.HasPrefix(k, "multi/") {
			t.Errorf("%s survived its namespace", k)
		}
	}
	if inf.Relists() != 0 {
		t.Errorf("Relists = %d; want 0 (failures resume, they do not relist)", inf.Relists())
	}
	if calls.Load() < 4 {
		t.Errorf("only %d subscriptions: the injected failures did not happen", calls.Load())
	}
	t.Logf("%d subscriptions, %d events delivered", calls.Load(), delivered.Load())
}

// TestBackoff: delays stay within [minBackoff, maxBackoff], each at most 3× the one before,
// grow towards maxBackoff while failures last, start over after reset, and are jittered: two
// informers failing together do not retry together.
func TestBackoff(t *testing.T) {
	var a, b backoff
	atCap := 0
	const steps = 200
	prev := minBackoff
	for n := range steps {
		d := a.next()
		if d < minBackoff || d > maxBackoff || d > 3*prev {
			t.Fatalf("step %d: %v after %v; want within [%v, min(%v, 3×previous)]", n, d, prev, minBackoff, maxBackoff)
		}
		prev = d
		if d == maxBackoff {
			atCap++
		}
	}
	if atCap < steps/10 {
		t.Errorf("the delay reached maxBackoff %d times of %d: it does not grow while failures last", atCap, steps)
	}
	// Informers that fail together (a NATS restart) start their back-off together.
	same := 0
	for range 100 {
		a.reset()
		b.reset()
		for range 3 {
			da, db := a.next(), b.next()
			if da > 27*minBackoff {
				t.Fatalf("after reset: %v; want at most %v by the third step", da, 27*minBackoff)
			}
			if da == db {
				same++
			}
		}
	}
	if same > 30 {
		t.Errorf("two back-offs started together chose the same delay %d times of 300: no jitter", same)
	}
}

// flakyClient fails the first listFailures lists and getFailures gets.
type flakyClient struct {
	client.Interface
	listFailures atomic.Int64
	lists        atomic.Int64
	getFailures  atomic.Int64
	gets         atomic.Int64
}

func (c *flakyClient) Get(ctx context.Context, k *scheme.Kind, ns, name string) (scheme.Object, error) {
	c.gets.Add(1)
	if c.getFailures.Add(-1) >= 0 {
		return nil, errors.New("injected: apiserver unreachable")
	}
	return c.Interface.Get(ctx, k, ns, name)
}

func (c *flakyClient) List(ctx context.Context, k *scheme.Kind, ns string, opts client.ListOptions) (*client.List, error) {
	c.lists.Add(1)
	if c.listFailures.Add(-1) >= 0 {
		return nil, errors.New("injected: apiserver unreachable")
	}
	return c.Interface.List(ctx, k, ns, opts)
}

// fakeClient and nilJetStream satisfy Config for tests that never run the informer.
type fakeClient struct{ client.Interface }

func (fakeClient) Scheme() *scheme.Scheme { return scheme.Default() }

type nilJetStream struct{ jetstream.JetStream }
