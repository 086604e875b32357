package registry

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// rangeBatches lets lists of one collection that arrive together share one etcd range, as
// a group commit shares one disk write: while a read of a collection is in flight, the lists
// arriving for it wait and then share the NEXT read, which starts after all of them arrived,
// so each still sees every write that completed before it asked (a consistent read). A list
// alone reads at once, as before. Selectors are applied per list on the shared values.
//
// Why: a fleet of node agents starting together lists pods once each with its own
// spec.nodeName selector; 1,000 ranges of every pod in the cluster cost etcd and the
// apiserver minutes, where kube-apiserver answers them from its watch cache.
type rangeBatches struct {
	mu       sync.Mutex
	pending  map[string]*rangeBatch // the batch gathering lists for the next read, by range
	inflight map[string]*rangeBatch // the batch being read, by range
	// reads counts ranges read, shared the lists that used another list's read.
	reads, shared atomic.Int64
}

type rangeBatch struct {
	done    chan struct{} // closed once page and err are set
	page    *storage.Page
	err     error
	started bool // under rangeBatches.mu
}

// rangeReadTimeout bounds a shared read: it serves several requests, so no one request's
// cancellation ends it.
const rangeReadTimeout = 30 * time.Second

// read returns the collection's page for key from a read that started after this call, with
// read doing the reading.
func (rb *rangeBatches) read(ctx context.Context, key string, read func(ctx context.Context) (*storage.Page, error)) (*storage.Page, error) {
	rb.mu.Lock()
	if rb.pending == nil {
		rb.pending, rb.inflight = map[string]*rangeBatch{}, map[string]*rangeBatch{}
	}
	b := rb.pending[key]
	if b == nil {
		b = &rangeBatch{done: make(chan struct{})}
		rb.pending[key] = b
	}
	for {
		if b.started { // another list of the batch leads its read
			rb.mu.Unlock()
			rb.shared.Add(1)
			select {
			case <-b.done:
				return b.page, b.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		cur := rb.inflight[key]
		if cur == nil { // lead the batch's read
			b.started = true
			rb.inflight[key] = b
			delete(rb.pending, key)
			rb.mu.Unlock()
			rb.reads.Add(1)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rangeReadTimeout)
			b.page, b.err = read(rctx)
			cancel()
			rb.mu.Lock()
			delete(rb.inflight, key)
			rb.mu.Unlock()
			close(b.done)
			return b.page, b.err
		}
		// A read that may have started before this list asked: wait for the next one.
		rb.mu.Unlock()
		select {
		case <-cur.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		rb.mu.Lock()
	}
}

// RangeStats counts the full collection reads lists made, and the lists that shared another
// list's read instead.
func (r *Registry) RangeStats() (reads, shared int64) {
	return r.ranges.reads.Load(), r.ranges.shared.Load()
}
