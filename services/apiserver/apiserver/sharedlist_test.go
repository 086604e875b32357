package apiserver

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Watches arriving while the state is being read wait for that read and share it when it is
// new enough for them; one that needs a newer state reads again.
func TestSharedListsConcurrentWatchesWaitForOneRead(t *testing.T) {
	var s sharedLists
	var loads atomic.Int64
	rev := atomic.Int64{}
	rev.Store(10)
	load := func() ([]scheme.Object, int64, error) {
		loads.Add(1)
		time.Sleep(50 * time.Millisecond)
		return nil, rev.Load(), nil
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, r, err := s.get(context.Background(), "pods", 10, load); err != nil || r != 10 {
				t.Errorf("get: rev %d, %v; want 10", r, err)
			}
		})
	}
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("20 concurrent watches needing revision 10 read %d times; want 1", n)
	}
	rev.Store(11)
	if _, r, _ := s.get(context.Background(), "pods", 11, load); r != 11 || loads.Load() != 2 {
		t.Errorf("a watch needing revision 11 got %d after %d reads; want a new read at 11", r, loads.Load())
	}
	if _, _, _ = s.get(context.Background(), "services", 0, load); loads.Load() != 3 {
		t.Errorf("another selection shared pods' list")
	}
}
