package workqueue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newQueue returns a queue that is shut down when the test ends.
func newQueue[T comparable](t *testing.T, opts ...Option) *Queue[T] {
	t.Helper()
	q := New[T](opts...)
	t.Cleanup(q.ShutDown)
	return q
}

// mustGet gets an item, failing the test if none arrives within 2s.
func mustGet[T comparable](t *testing.T, q *Queue[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	item, shutdown := q.Get(ctx)
	if shutdown {
		t.Fatalf("Get: got shutdown, want an item")
	}
	return item
}

// assertEmpty checks that no item becomes ready within a short wait.
func assertEmpty[T comparable](t *testing.T, q *Queue[T], wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if item, shutdown := q.Get(ctx); !shutdown {
		t.Fatalf("Get: got %v, want nothing", item)
	}
}

func TestAddDedupsWaitingItems(t *testing.T) {
	q := newQueue[string](t)
	q.Add("a")
	q.Add("b")
	q.Add("a")
	if got := q.Len(); got != 2 {
		t.Fatalf("Len = %d, want 2", got)
	}
	if got := mustGet(t, q); got != "a" {
		t.Fatalf("first Get = %q, want a", got)
	}
	if got := mustGet(t, q); got != "b" {
		t.Fatalf("second Get = %q, want b", got)
	}
	q.Done("a")
	q.Done("b")
	if got := q.Len(); got != 0 {
		t.Fatalf("Len = %d, want 0", got)
	}
	assertEmpty(t, q, 20*time.Millisecond)
}

func TestAddWhileProcessingRequeuesOnceAfterDone(t *testing.T) {
	q := newQueue[string](t)
	q.Add("a")
	if got := mustGet(t, q); got != "a" {
		t.Fatalf("Get = %q, want a", got)
	}
	q.Add("a")
	q.Add("a")
	if got := q.Len(); got != 0 {
		t.Fatalf("Len while processing = %d, want 0 (must not be handed out twice)", got)
	}
	assertEmpty(t, q, 20*time.Millisecond)

	q.Done("a")
	if got := q.Len(); got != 1 {
		t.Fatalf("Len after Done = %d, want 1", got)
	}
	if got := mustGet(t, q); got != "a" {
		t.Fatalf("Get = %q, want a", got)
	}
	q.Done("a")
	assertEmpty(t, q, 20*time.Millisecond)
}

func TestDoneWithoutGetIsNoop(t *testing.T) {
	q := newQueue[string](t)
	q.Add("a")
	q.Done("a") // not handed out: must not duplicate the queued item
	if got := q.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1", got)
	}
	mustGet(t, q)
	q.Done("a")
	assertEmpty(t, q, 20*time.Millisecond)
}

// Many workers and producers hammer a few keys: no key may be held by two workers at
// once, and every Add must be followed by a Get of that key (no lost re-adds).
func TestItemNeverProcessedConcurrently(t *testing.T) {
	const (
		keys      = 8
		workers   = 16
		producers = 4
		addsEach  = 500
	)
	q := newQueue[int](t)
	var (
		holders  [keys]atomic.Int32 // workers currently holding each key
		added    [keys]atomic.Int64 // adds so far, bumped before each Add
		seen     [keys]atomic.Int64 // value of added[k] at the latest Get of k
		overlaps atomic.Int32
	)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				k, shutdown := q.Get(ctx)
				if shutdown {
					return
				}
				seen[k].Store(added[k].Load())
				if holders[k].Add(1) > 1 {
					overlaps.Add(1)
				}
				time.Sleep(50 * time.Microsecond)
				holders[k].Add(-1)
				q.Done(k)
			}
		})
	}
	var pwg sync.WaitGroup
	for p := range producers {
		pwg.Go(func() {
			for i := range addsEach {
				k := (i + p) % keys
				added[k].Add(1)
				q.Add(k)
			}
		})
	}
	pwg.Wait()

	deadline := time.Now().Add(5 * time.Second)
	for k := range keys {
		for seen[k].Load() != added[k].Load() {
			if time.Now().After(deadline) {
				t.Fatalf("key %d: last Get saw %d adds, want %d (an Add was lost)", k, seen[k].Load(), added[k].Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d times a key was held by two workers at once", n)
	}
}

func TestAddAfterDelays(t *testing.T) {
	q := newQueue[string](t)
	start := time.Now()
	q.AddAfter("a", 50*time.Millisecond)
	if got := q.Len(); got != 0 {
		t.Fatalf("Len right after AddAfter = %d, want 0", got)
	}
	if got := mustGet(t, q); got != "a" {
		t.Fatalf("Get = %q, want a", got)
	}
	if elapsed := time.Since(start); elapsed < 50*time.Millisecond {
		t.Fatalf("item ready after %v, want >= 50ms", elapsed)
	}
}

func TestAddAfterOrdersByReadyTime(t *testing.T) {
	q := newQueue[string](t)
	q.AddAfter("c", 300*time.Millisecond)
	q.AddAfter("a", 100*time.Millisecond)
	q.AddAfter("b", 200*time.Millisecond)
	q.AddAfter("now", 0)
	for _, want := range []string{"now", "a", "b", "c"} {
		if got := mustGet(t, q); got != want {
			t.Fatalf("Get = %q, want %q", got, want)
		}
	}
}

func TestAddAfterKeepsEarliestAndDedups(t *testing.T) {
	q := newQueue[string](t)
	q.AddAfter("a", time.Hour)
	q.AddAfter("a", 10*time.Millisecond) // brings it forward
	q.AddAfter("a", time.Hour)           // must not push it back
	if got := mustGet(t, q); got != "a" {
		t.Fatalf("Get = %q, want a", got)
	}
	q.Done("a")
	assertEmpty(t, q, 100*time.Millisecond)
}

func TestAddRateLimitedUsesLimiter(t *testing.T) {
	q := newQueue[string](t, WithRateLimiter(NewExponentialRateLimiter[string](100*time.Millisecond, time.Second)))
	start := time.Now()
	q.AddRateLimited("a")
	if got := q.NumRequeues("a"); got != 1 {
		t.Fatalf("NumRequeues = %d, want 1", got)
	}
	mustGet(t, q)
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Fatalf("rate-limited item ready after %v, want >= 100ms", elapsed)
	}
	q.Done("a")
	q.Forget("a")
	if got := q.NumRequeues("a"); got != 0 {
		t.Fatalf("NumRequeues after Forget = %d, want 0", got)
	}
}

func TestWithRateLimiterWrongTypePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New with a RateLimiter[int] for a Queue[string] did not panic")
		}
	}()
	New[string](WithRateLimiter(NewExponentialRateLimiter[int](time.Millisecond, time.Second)))
}

func TestWithName(t *testing.T) {
	if got := newQueue[string](t, WithName("pods")).Name(); got != "pods" {
		t.Fatalf("Name = %q, want pods", got)
	}
}

func TestShutDownWakesBlockedGet(t *testing.T) {
	q := New[string]()
	const getters = 5
	results := make(chan bool, getters)
	for range getters {
		go func() {
			_, shutdown := q.Get(context.Background())
			results <- shutdown
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them block (the test holds either way)
	q.ShutDown()
	q.ShutDown() // idempotent
	for range getters {
		select {
		case shutdown := <-results:
			if !shutdown {
				t.Fatal("Get returned an item after ShutDown")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Get still blocked 2s after ShutDown")
		}
	}
	if !q.ShuttingDown() {
		t.Fatal("ShuttingDown = false after ShutDown")
	}
}

func TestAfterShutDown(t *testing.T) {
	q := New[string]()
	q.Add("queued")
	q.AddAfter("delayed", 10*time.Millisecond)
	q.ShutDown()

	select {
	case <-q.loopDone:
	default:
		t.Fatal("delay goroutine still running after ShutDown returned")
	}
	q.Add("late")
	if _, shutdown := q.Get(context.Background()); !shutdown {
		t.Fatal("Get after ShutDown returned an item, want shutdown=true")
	}
	if !q.ShuttingDown() {
		t.Fatal("ShuttingDown = false")
	}
}

func TestGetHonoursContext(t *testing.T) {
	q := newQueue[string](t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool, 1)
	go func() {
		_, shutdown := q.Get(ctx)
		done <- shutdown
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case shutdown := <-done:
		if !shutdown {
			t.Fatal("Get returned an item, want shutdown=true on ctx cancel")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Get still blocked 2s after ctx cancel")
	}

	// A cancelled Get must not affect the queue or other callers.
	if q.ShuttingDown() {
		t.Fatal("ctx cancel shut the queue down")
	}
	q.Add("a")
	if got := mustGet(t, q); got != "a" {
		t.Fatalf("Get = %q, want a", got)
	}

	// An already-done ctx returns at once even with items ready.
	q.Add("b")
	if _, shutdown := q.Get(ctx); !shutdown {
		t.Fatal("Get with a done ctx returned an item")
	}
	if got := mustGet(t, q); got != "b" {
		t.Fatalf("Get = %q, want b (item lost by the cancelled Get)", got)
	}
}

// Getters whose contexts keep expiring must not swallow wake-ups meant for the
// getters that are still waiting.
func TestCancelledGettersDoNotLoseItems(t *testing.T) {
	q := newQueue[int](t)
	const items = 200
	got := make(chan int, items)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var wg sync.WaitGroup
	for range 4 { // steady workers
		wg.Go(func() {
			for {
				item, shutdown := q.Get(ctx)
				if shutdown {
					return
				}
				got <- item
				q.Done(item)
			}
		})
	}
	for range 4 { // impatient getters
		wg.Go(func() {
			for ctx.Err() == nil {
				c, cancelGet := context.WithTimeout(ctx, 100*time.Microsecond)
				item, shutdown := q.Get(c)
				cancelGet()
				if !shutdown {
					got <- item
					q.Done(item)
				}
			}
		})
	}
	for i := range items {
		q.Add(i)
		if i%10 == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	seen := map[int]bool{}
	timeout := time.After(5 * time.Second)
	for len(seen) < items {
		select {
		case i := <-got:
			seen[i] = true
		case <-timeout:
			t.Fatalf("received %d of %d items", len(seen), items)
		}
	}
	cancel()
	wg.Wait()
}
