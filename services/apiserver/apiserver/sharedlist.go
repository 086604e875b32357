package apiserver

import (
	"context"
	"sync"
	"time"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// sharedListTTL is how long a watch's initial state may be handed to later watches of the
// same selection that need nothing newer. Watch-lists come in bursts (every client-go
// informer of a restarted fleet at once); each decoded list of thousands of pods is
// megabytes, so a hundred of them read separately cost the server gigabytes.
const sharedListTTL = time.Second

// sharedLists lets watches that start with the current state share one read of it, as
// kube-apiserver's watches share its watch cache: a list at revision R serves every watch
// that needs a state at least as new as some revision <= R. The items are shared and read
// only.
type sharedLists struct {
	mu    sync.Mutex
	lists map[string]*sharedList
	// reads and shares count loads and reuses, for metrics and tests.
	reads, shares int64
}

type sharedList struct {
	done  chan struct{} // closed when items, rev and err are set
	items []scheme.Object
	rev   int64
	err   error
}

func (l *sharedList) ready() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// get returns the state of the selection key at a revision >= needRev: a shared one if there
// is one (waiting for one being read), else the result of load, which it shares.
func (s *sharedLists) get(ctx context.Context, key string, needRev int64, load func() ([]scheme.Object, int64, error)) ([]scheme.Object, int64, error) {
	waited := false
	for {
		s.mu.Lock()
		l := s.lists[key]
		if l != nil && !l.ready() && !waited {
			s.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
			waited = true
			continue
		}
		if l != nil && l.ready() && l.err == nil && l.rev >= needRev {
			s.shares++
			s.mu.Unlock()
			return l.items, l.rev, nil
		}
		// None, one too old, or one read before this watch needed it: read anew.
		l = &sharedList{done: make(chan struct{})}
		if s.lists == nil {
			s.lists = map[string]*sharedList{}
		}
		s.lists[key] = l
		s.reads++
		s.mu.Unlock()
		l.items, l.rev, l.err = load()
		close(l.done)
		// Forget it once it is too old to share (or at once if it failed), so that its items
		// can be freed even if no other watch of the selection comes.
		forget := func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.lists[key] == l {
				delete(s.lists, key)
			}
		}
		if l.err != nil {
			forget()
		} else {
			time.AfterFunc(sharedListTTL, forget)
		}
		return l.items, l.rev, l.err
	}
}

func (s *sharedLists) stats() (reads, shares int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads, s.shares
}
