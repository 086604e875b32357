package apiserver

import (
	"sync"
	"sync/atomic"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
)

// watchEncodings remembers the JSON of the objects REST watches sent last, by object: the
// watches of one kind read the same decoded events from their shared live feed (and
// watch-lists the same shared initial state), so a hundred watches of pods encode each change
// once, not a hundred times, as kube-apiserver's watch cache serializes an event once for all
// its watchers. Objects are keyed by identity, which is exact: a shared event's object is
// never modified, and a different object (an oversize event's own read) is encoded anew.
type watchEncodings struct {
	mu    sync.Mutex
	byObj map[scheme.Object]*watchEncoding
	ring  []scheme.Object // the remembered objects, oldest at next; evicted in order
	next  int
	// encodes counts the objects encoded, reuses the sends that found one encoded.
	encodes, reuses atomic.Int64
}

// watchEncoding is one object's JSON, made once by the first watch that sends it while the
// others sending it at the same time wait for it.
type watchEncoding struct {
	once sync.Once
	json []byte
	err  error
}

// watchEncodingsKept bounds the remembered encodings (as the live feeds' ring of 4,096
// events): a watch sends an event soon after its feed decoded it, or catches up from the
// stream with objects of its own.
const watchEncodingsKept = 4096

func newWatchEncodings(kept int) *watchEncodings {
	return &watchEncodings{byObj: make(map[scheme.Object]*watchEncoding, kept), ring: make([]scheme.Object, kept)}
}

// json returns obj's JSON, encoding it unless it was recently.
func (e *watchEncodings) json(obj scheme.Object) ([]byte, error) {
	e.mu.Lock()
	enc, ok := e.byObj[obj]
	if !ok {
		enc = &watchEncoding{}
		if old := e.ring[e.next]; old != nil {
			delete(e.byObj, old)
		}
		e.ring[e.next] = obj
		e.byObj[obj] = enc
		e.next = (e.next + 1) % len(e.ring)
	}
	e.mu.Unlock()
	encoded := false
	enc.once.Do(func() {
		enc.json, enc.err = codec.Marshal(obj)
		encoded = true
	})
	if encoded {
		e.encodes.Add(1)
	} else {
		e.reuses.Add(1)
	}
	return enc.json, enc.err
}
