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

	// byNode indexes a page of pods by spec.nodeName (positions in page.KVs, in key order),
	// built once by the first node-pinned list of the batch: the node agents that share the
	// read then each visit only their node's pods, not every pod of the cluster.
	nodeOnce sync.Once
	byNode   map[string][]int
	nodeErr  error
}

// nodeIndex returns the positions of the page's objects bound to node, indexing the page by
// nodeOf on the first call.
func (b *rangeBatch) nodeIndex(node string, nodeOf func(storage.KeyValue) (string, error)) ([]int, error) {
	b.nodeOnce.Do(func() {
		b.byNode = map[string][]int{}
		for i, kv := range b.page.KVs {
			n, err := nodeOf(kv)
			if err != nil {
				b.nodeErr = err
				return
			}
			b.byNode[n] = append(b.byNode[n], i)
		}
	})
	return b.byNode[node], b.nodeErr
}

// rangeReadTimeout bounds a shared read: it serves several requests, so no one request's
// cancellation ends it.
const rangeReadTimeout = 30 * time.Second

// read returns the collection's page for key from a read that started after this call, with
// read doing the reading.
func (rb *rangeBatches) read(ctx context.Context, key string, read func(ctx context.Context) (*storage.Page, error)) (*storage.Page, error) {
	b, err := rb.readBatch(ctx, key, read)
	if err != nil {
		return nil, err
	}
	return b.page, nil
}

// readBatch is read, returning the batch whose read answered (its page and indexes).
func (rb *rangeBatches) readBatch(ctx context.Context, key string, read func(ctx context.Context) (*storage.Page, error)) (*rangeBatch, error) {
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
				return b, b.err
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
			return b, b.err
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

// ListStats counts the stored objects lists examined (decoded or matched against their
// selectors) and those they returned: a node's list should examine its node's pods only.
func (r *Registry) ListStats() (evaluated, returned int64) {
	return r.listEvaluated.Load(), r.listReturned.Load()
}
