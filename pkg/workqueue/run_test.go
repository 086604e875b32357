package workqueue

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestRunProcessesAndRetriesWithBackoff(t *testing.T) {
	const base = 20 * time.Millisecond
	q := New[string](WithRateLimiter(NewExponentialRateLimiter[string](base, time.Second)))

	var (
		mu       sync.Mutex
		attempts = map[string][]time.Time{}
		active   = map[string]bool{}
		overlap  bool
	)
	allDone := make(chan struct{})
	reconcile := func(_ context.Context, item string) error {
		mu.Lock()
		if active[item] {
			overlap = true
		}
		active[item] = true
		attempts[item] = append(attempts[item], time.Now())
		n := len(attempts[item])
		mu.Unlock()
		defer func() { mu.Lock(); active[item] = false; mu.Unlock() }()

		if item == "flaky" && n <= 3 {
			return errors.New("not yet")
		}
		if item == "flaky" {
			close(allDone)
		}
		return nil
	}

	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() {
		Run(ctx, q, 4, reconcile)
		close(returned)
	}()
	for _, item := range []string{"a", "b", "c", "flaky"} {
		q.Add(item)
	}

	select {
	case <-allDone:
	case <-time.After(5 * time.Second):
		t.Fatal("flaky item did not succeed within 5s")
	}
	// The Forget after success runs just after reconcile returns.
	deadline := time.Now().Add(2 * time.Second)
	for q.NumRequeues("flaky") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("NumRequeues(flaky) = %d after success, want 0", q.NumRequeues("flaky"))
		}
		time.Sleep(time.Millisecond)
	}

	cancel()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of ctx cancel")
	}
	if !q.ShuttingDown() {
		t.Fatal("Run returned without shutting the queue down")
	}

	mu.Lock()
	defer mu.Unlock()
	if overlap {
		t.Fatal("an item was reconciled by two workers at once")
	}
	for _, item := range []string{"a", "b", "c"} {
		if n := len(attempts[item]); n != 1 {
			t.Errorf("%s reconciled %d times, want 1", item, n)
		}
	}
	f := attempts["flaky"]
	if len(f) != 4 {
		t.Fatalf("flaky reconciled %d times, want 4", len(f))
	}
	// Retries follow the exponential back-off: gaps of at least 20ms, 40ms, 80ms.
	for i := 1; i < len(f); i++ {
		want := base << (i - 1)
		if gap := f[i].Sub(f[i-1]); gap < want {
			t.Errorf("retry %d came %v after the previous attempt, want >= %v", i, gap, want)
		}
	}
}

func TestRunReturnsWhenQueueShutDownElsewhere(t *testing.T) {
	q := New[int]()
	returned := make(chan struct{})
	go func() {
		Run(context.Background(), q, 2, func(context.Context, int) error { return nil })
		close(returned)
	}()
	q.ShutDown()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of ShutDown")
	}
}

func TestRunWaitsForInFlightReconcile(t *testing.T) {
	q := New[int]()
	started := make(chan struct{})
	var finished bool
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() {
		Run(ctx, q, 1, func(context.Context, int) error {
			close(started)
			time.Sleep(50 * time.Millisecond) // ignores ctx, like a slow reconcile
			mu.Lock()
			finished = true
			mu.Unlock()
			return nil
		})
		close(returned)
	}()
	q.Add(1)
	<-started
	cancel()
	select {
	case <-returned:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of ctx cancel")
	}
	mu.Lock()
	defer mu.Unlock()
	if !finished {
		t.Fatal("Run returned before the in-flight reconcile finished")
	}
}
