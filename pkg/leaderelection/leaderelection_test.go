package leaderelection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testenv"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/leaderelection"
)

// candidate is one replica in the test: it counts how long it believes it leads.
type candidate struct {
	id      string
	leading atomic.Bool
	started atomic.Int32
	cancel  context.CancelFunc
	done    chan error
}

func startCandidate(t *testing.T, env *testenv.Env, id string, overlap *atomic.Int32) *candidate {
	t.Helper()
	c := &candidate{id: id, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	el, err := leaderelection.New(leaderelection.Config{
		Client: env.Client, Namespace: "kube-system", Name: "test-component", Identity: id,
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnStartedLeading: func(ctx context.Context) {
			c.started.Add(1)
			if overlap.Add(1) > 1 {
				t.Errorf("%s started leading while another leads", id)
			}
			c.leading.Store(true)
			<-ctx.Done()
			c.leading.Store(false)
			overlap.Add(-1)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- el.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

func waitLeader(t *testing.T, cands []*candidate, within time.Duration) *candidate {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, c := range cands {
			if c.leading.Load() {
				return c
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader within %v", within)
	return nil
}

// Three candidates: exactly one leads at any time; a leader that stops releases the Lease
// and another takes over at once; a leader that dies without releasing is replaced once the
// Lease has not changed for its duration.
func TestElectionThroughALease(t *testing.T) {
	env := testenv.Start(t)
	var overlap atomic.Int32
	var cands []*candidate
	for i := range 3 {
		cands = append(cands, startCandidate(t, env, fmt.Sprintf("replica-%d", i), &overlap))
	}
	first := waitLeader(t, cands, 5*time.Second)
	time.Sleep(time.Second) // renewals keep the same leader
	if !first.leading.Load() {
		t.Fatal("the leader lost the lease while renewing it")
	}

	// A clean stop releases the lease: the next leader starts well within the lease duration.
	stopped := time.Now()
	first.cancel()
	if err := <-first.done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	first.done <- nil // for the cleanup
	rest := []*candidate{}
	for _, c := range cands {
		if c != first {
			rest = append(rest, c)
		}
	}
	second := waitLeader(t, rest, 5*time.Second)
	if d := time.Since(stopped); d > 1500*time.Millisecond {
		t.Errorf("takeover after a release took %v; want well under the 2 s lease duration", d)
	}

	lk, _ := scheme.Default().ForName("leases")
	obj, err := env.Client.Get(context.Background(), lk, "kube-system", "test-component")
	if err != nil {
		t.Fatal(err)
	}
	l := obj.(*coordinationv1.Lease)
	if l.GetSpec().GetHolderIdentity() != second.id || l.GetSpec().GetLeaseTransitions() < 1 ||
		l.GetSpec().GetRenewTime() == "" || l.GetSpec().GetAcquireTime() == "" {
		t.Errorf("lease after takeover: %v", l.GetSpec())
	}
}

// A leader that stops renewing without releasing (a crashed process) is replaced only after
// the lease duration, measured from when the others last saw the lease change.
func TestExpiredLeaseIsTakenOver(t *testing.T) {
	env := testenv.Start(t)
	lk, _ := scheme.Default().ForName("leases")
	// A lease held by a replica that died: renewed "now" by its clock, never again.
	ghost := &coordinationv1.Lease{ApiVersion: "coordination.k8s.io/v1", Kind: "Lease"}
	ghost.Metadata = newMeta("kube-system", "test-component")
	dur := int32(2)
	ghost.Spec = &coordinationv1.LeaseSpec{HolderIdentity: "crashed", LeaseDurationSeconds: &dur,
		RenewTime: time.Now().UTC().Format(leaderelection.MicroTimeFormat)}
	if _, err := env.Client.Create(context.Background(), ghost); err != nil {
		t.Fatal(err)
	}
	var overlap atomic.Int32
	start := time.Now()
	c := startCandidate(t, env, "survivor", &overlap)
	waitLeader(t, []*candidate{c}, 6*time.Second)
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("took over a live-looking lease after %v; want at least its 2 s duration", d)
	}
	obj, _ := env.Client.Get(context.Background(), lk, "kube-system", "test-component")
	if h := obj.(*coordinationv1.Lease).GetSpec().GetHolderIdentity(); h != "survivor" {
		t.Errorf("holder %q", h)
	}
}

func newMeta(ns, name string) *metav1.ObjectMeta {
	return &metav1.ObjectMeta{Namespace: ns, Name: name}
}
