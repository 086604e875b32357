package registry

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// A list that arrives while a read is in flight must not take that read's result (it may
// predate a write the list must see): it shares the next read with the lists that arrived
// with it.
func TestRangeBatchesShareOnlyReadsStartedAfterTheList(t *testing.T) {
	var rb rangeBatches
	var mu sync.Mutex
	reads := int64(0)
	release := make(chan struct{})
	read := func(ctx context.Context) (*storage.Page, error) {
		mu.Lock()
		reads++
		n := reads
		mu.Unlock()
		if n == 1 {
			<-release // the first read stays in flight while others arrive
		}
		return &storage.Page{Revision: n}, nil
	}
	got := make([]int64, 4)
	var wg sync.WaitGroup
	wg.Go(func() {
		p, _ := rb.read(context.Background(), "pods", read)
		got[0] = p.Revision
	})
	for rb.reads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < 4; i++ {
		wg.Go(func() {
			p, _ := rb.read(context.Background(), "pods", read)
			got[i] = p.Revision
		})
	}
	time.Sleep(100 * time.Millisecond) // the three wait on the first read
	close(release)
	wg.Wait()
	if got[0] != 1 || got[1] != 2 || got[2] != 2 || got[3] != 2 {
		t.Errorf("reads seen %v; want the first list's own read 1, and one shared later read 2 for the rest", got)
	}
	if rb.reads.Load() != 2 {
		t.Errorf("%d reads for 4 lists; want 2", rb.reads.Load())
	}
	// Another collection is never batched with this one.
	if p, _ := rb.read(context.Background(), "services", read); p.Revision != 3 {
		t.Errorf("services read %d; want its own read", p.Revision)
	}
}
