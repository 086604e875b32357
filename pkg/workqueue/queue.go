// Package workqueue is the rate-limited work queue used by Skiff controllers. It follows
// the semantics of Kubernetes' client-go workqueue:
//
//   - an item waiting in the queue is held once, however often it is added;
//   - an item is never handed to two workers at once: adding an item that is being
//     processed (between Get and Done) marks it dirty, and Done puts it back;
//   - AddAfter delays an item, AddRateLimited delays it by its RateLimiter back-off,
//     and Forget resets that back-off once the item has been processed successfully.
//
// Unlike client-go, Get returns shutdown=true as soon as ShutDown has been called, even
// if items are still waiting: the queue is controller-owned and rebuilt from a fresh
// list on restart, so draining it buys nothing.
package workqueue

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"
)

// Queue is a deduplicating FIFO of keys with delayed and rate-limited adds. It is safe
// for concurrent use; create it with New and stop it with ShutDown.
type Queue[T comparable] struct {
	name    string
	limiter RateLimiter[T]

	mu   sync.Mutex
	cond *sync.Cond // signalled (with mu held) when queue grows or the queue shuts down

	// queue holds the ready items in order; dirty is the set of items that need
	// processing (all of queue, plus processing items that were re-added); processing
	// is the set of items handed out by Get and not yet Done.
	queue      []T
	dirty      map[T]struct{}
	processing map[T]struct{}

	// waiting holds AddAfter items not yet ready, ordered by readyAt; waitingIdx
	// finds an item's entry so a second AddAfter can only bring it forward.
	waiting    waitHeap[T]
	waitingIdx map[T]*waitEntry[T]
	poke       chan struct{} // wakes the delay loop when waiting changed (cap 1)

	shuttingDown bool
	stop         chan struct{} // closed by ShutDown to stop the delay loop
	loopDone     chan struct{} // closed when the delay loop has returned
}

// Option configures a Queue built by New.
type Option func(*options)

type options struct {
	name    string
	limiter any // a RateLimiter[T]; Option is not generic so callers need not spell T
}

// WithName names the queue (for metrics and logs).
func WithName(name string) Option {
	return func(o *options) { o.name = name }
}

// WithRateLimiter sets the limiter used by AddRateLimited, Forget and NumRequeues.
// The default is DefaultControllerRateLimiter. New panics if the limiter's key type
// differs from the queue's.
func WithRateLimiter[T comparable](l RateLimiter[T]) Option {
	return func(o *options) {
		if l != nil {
			o.limiter = l
		}
	}
}

// New returns a running queue. It starts one goroutine (for AddAfter) that ShutDown
// stops, so every queue must eventually be shut down.
func New[T comparable](opts ...Option) *Queue[T] {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	limiter := DefaultControllerRateLimiter[T]()
	if o.limiter != nil {
		l, ok := o.limiter.(RateLimiter[T])
		if !ok {
			var zero T
			panic(fmt.Sprintf("workqueue: WithRateLimiter got %T, want a RateLimiter[%T]", o.limiter, zero))
		}
		limiter = l
	}
	q := &Queue[T]{
		name:       o.name,
		limiter:    limiter,
		dirty:      map[T]struct{}{},
		processing: map[T]struct{}{},
		waitingIdx: map[T]*waitEntry[T]{},
		poke:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		loopDone:   make(chan struct{}),
	}
	q.cond = sync.NewCond(&q.mu)
	go q.delayLoop()
	return q
}

// Name returns the name given with WithName.
func (q *Queue[T]) Name() string { return q.name }

// Add queues item unless it is already waiting. If item is being processed it is
// queued again when Done is called. Adds after ShutDown are dropped.
func (q *Queue[T]) Add(item T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(item)
}

func (q *Queue[T]) addLocked(item T) {
	if q.shuttingDown {
		return
	}
	if _, ok := q.dirty[item]; ok {
		return
	}
	q.dirty[item] = struct{}{}
	if _, ok := q.processing[item]; ok {
		return // Done will queue it, so it is never held by two workers
	}
	q.queue = append(q.queue, item)
	q.cond.Signal()
}

// AddAfter adds item once d has passed. If item is already waiting for a later time it
// is brought forward; an earlier pending time is kept.
func (q *Queue[T]) AddAfter(item T, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shuttingDown {
		return
	}
	if d <= 0 {
		q.addLocked(item)
		return
	}
	readyAt := time.Now().Add(d)
	if e, ok := q.waitingIdx[item]; ok {
		if !readyAt.Before(e.readyAt) {
			return
		}
		e.readyAt = readyAt
		heap.Fix(&q.waiting, e.index)
	} else {
		e := &waitEntry[T]{item: item, readyAt: readyAt}
		heap.Push(&q.waiting, e)
		q.waitingIdx[item] = e
	}
	// Non-blocking: one pending poke is enough for the loop to re-read the heap.
	select {
	case q.poke <- struct{}{}:
	default:
	}
}

// AddRateLimited adds item after the back-off its rate limiter asks for.
func (q *Queue[T]) AddRateLimited(item T) {
	q.AddAfter(item, q.limiter.When(item))
}

// Forget resets item's back-off; call it once item has been processed successfully.
// It does not remove item from the queue.
func (q *Queue[T]) Forget(item T) { q.limiter.Forget(item) }

// NumRequeues reports how many times item has been rate-limited since it was last
// forgotten.
func (q *Queue[T]) NumRequeues(item T) int { return q.limiter.NumRequeues(item) }

// Get blocks until an item is ready and hands it to the caller, who must call Done
// with it when finished. It returns shutdown=true (and the zero item) once ShutDown
// has been called or ctx is done.
func (q *Queue[T]) Get(ctx context.Context) (item T, shutdown bool) {
	// sync.Cond knows nothing of contexts, so wake the waiters when ctx ends. Taking mu
	// first means the broadcast cannot fall between our ctx check and our Wait.
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()

	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.queue) == 0 && !q.shuttingDown && ctx.Err() == nil {
		q.cond.Wait()
	}
	if q.shuttingDown || ctx.Err() != nil {
		// Add or Done may have Signalled us rather than a Get that will take the item;
		// pass the wake-up on so the item is not stranded.
		if len(q.queue) > 0 {
			q.cond.Signal()
		}
		return item, true
	}
	item = q.queue[0]
	var zero T
	q.queue[0] = zero // let the backing array drop its reference
	q.queue = q.queue[1:]
	q.processing[item] = struct{}{}
	delete(q.dirty, item)
	return item, false
}

// Done marks item as processed. If it was added again meanwhile it is queued again.
// Done for an item that Get did not hand out is a no-op.
func (q *Queue[T]) Done(item T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.processing[item]; !ok {
		return
	}
	delete(q.processing, item)
	if _, ok := q.dirty[item]; ok && !q.shuttingDown {
		q.queue = append(q.queue, item)
		q.cond.Signal()
	}
}

// Len returns the number of items ready to be handed out (not delayed or processing).
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// ShutDown makes every blocked and future Get return shutdown=true, drops further
// adds, and stops the delay goroutine, waiting for it to exit. It is idempotent.
func (q *Queue[T]) ShutDown() {
	q.mu.Lock()
	if !q.shuttingDown {
		q.shuttingDown = true
		close(q.stop)
		q.cond.Broadcast()
	}
	q.mu.Unlock()
	<-q.loopDone // outside mu: the loop takes mu to move ready items
}

// ShuttingDown reports whether ShutDown has been called.
func (q *Queue[T]) ShuttingDown() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.shuttingDown
}

// delayLoop moves AddAfter items into the queue when they become ready. It sleeps until
// the earliest readyAt, or until AddAfter pokes it because the heap changed.
func (q *Queue[T]) delayLoop() {
	defer close(q.loopDone)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		now := time.Now()
		for len(q.waiting) > 0 && !q.waiting[0].readyAt.After(now) {
			e := heap.Pop(&q.waiting).(*waitEntry[T])
			delete(q.waitingIdx, e.item)
			q.addLocked(e.item)
		}
		var next <-chan time.Time // nil (blocks forever) when nothing is waiting
		if len(q.waiting) > 0 {
			// Since Go 1.23 Reset discards any stale tick, so no draining is needed.
			timer.Reset(q.waiting[0].readyAt.Sub(now))
			next = timer.C
		}
		q.mu.Unlock()

		select {
		case <-q.stop:
			return
		case <-q.poke:
		case <-next:
		}
	}
}

type waitEntry[T comparable] struct {
	item    T
	readyAt time.Time
	index   int // position in waitHeap, kept up to date for heap.Fix
}

// waitHeap is a min-heap of entries by readyAt, for container/heap.
type waitHeap[T comparable] []*waitEntry[T]

func (h waitHeap[T]) Len() int           { return len(h) }
func (h waitHeap[T]) Less(i, j int) bool { return h[i].readyAt.Before(h[j].readyAt) }
func (h waitHeap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *waitHeap[T]) Push(x any) {
	e := x.(*waitEntry[T])
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *waitHeap[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
