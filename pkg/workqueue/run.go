package workqueue

import (
	"context"
	"sync"
)

// Run starts workers goroutines that take items from q and pass them to reconcile. A
// failed item is re-added with AddRateLimited; a successful one is forgotten, resetting
// its back-off. Done is always called, so an item added during reconcile is retried.
//
// Run returns once ctx is done, or q has been shut down by someone else, after shutting
// q down and waiting for in-flight reconciles to return. It panics if workers < 1.
func Run[T comparable](ctx context.Context, q *Queue[T], workers int, reconcile func(ctx context.Context, item T) error) {
	if workers < 1 {
		panic("workqueue: Run needs at least one worker")
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for processNext(ctx, q, reconcile) {
			}
		})
	}
	allExited := make(chan struct{})
	go func() { wg.Wait(); close(allExited) }()

	select {
	case <-ctx.Done():
	case <-allExited: // the queue was shut down elsewhere
	}
	q.ShutDown()
	<-allExited
}

// processNext handles one item and reports whether the worker should continue.
func processNext[T comparable](ctx context.Context, q *Queue[T], reconcile func(context.Context, T) error) bool {
	item, shutdown := q.Get(ctx)
	if shutdown {
		return false
	}
	defer q.Done(item)
	if err := reconcile(ctx, item); err != nil {
		q.AddRateLimited(item)
	} else {
		q.Forget(item)
	}
	return true
}
