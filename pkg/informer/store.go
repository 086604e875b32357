package informer

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// KeyOf is an object's cache key: "namespace/name" for namespaced objects, "name" for
// cluster-scoped ones. It is also the key controllers put on their work queues.
func KeyOf(obj scheme.Object) string {
	md := obj.GetMetadata()
	if ns := md.GetNamespace(); ns != "" {
		return ns + "/" + md.GetName()
	}
	return md.GetName()
}

// SplitKey is KeyOf's inverse. Names and namespaces cannot hold "/", so the first one
// separates them.
func SplitKey(key string) (namespace, name string) {
	if ns, n, ok := strings.Cut(key, "/"); ok {
		return ns, n
	}
	return "", key
}

// Store is the informer's thread-safe, indexed cache of one kind's objects.
//
// Objects handed out by the Store (and to event handlers) are shared with the cache and
// with every other reader: callers must not mutate them. Clone them first
// (proto.Clone) to build an update.
//
// Only the informer writes to its Store; everything exported reads.
type Store struct {
	log *slog.Logger
	// indexers is replaced, never changed in place (AddIndexers), so put can run index
	// functions on a snapshot outside the lock; indexersGen counts replacements.
	indexers    Indexers
	indexersGen int

	mu    sync.RWMutex
	items map[string]scheme.Object
	// indices: index name → index value → set of keys.
	indices map[string]map[string]map[string]struct{}
	// values: key → index name → the values the object was indexed under, so that removing
	// or replacing an object unindexes exactly what was indexed (even if an IndexFunc is not
	// deterministic).
	values map[string]map[string][]string
}

func newStore(indexers Indexers, log *slog.Logger) *Store {
	s := &Store{
		log:      log,
		indexers: indexers,
		items:    map[string]scheme.Object{},
		indices:  map[string]map[string]map[string]struct{}{},
		values:   map[string]map[string][]string{},
	}
	for name := range indexers {
		s.indices[name] = map[string]map[string]struct{}{}
	}
	return s
}

// Get returns the object namespace/name (namespace "" for cluster-scoped kinds).
func (s *Store) Get(namespace, name string) (scheme.Object, bool) {
	if namespace == "" {
		return s.GetByKey(name)
	}
	return s.GetByKey(namespace + "/" + name)
}

// GetByKey returns the object with key (see KeyOf), e.g. one taken from a work queue.
func (s *Store) GetByKey(key string) (scheme.Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	obj, ok := s.items[key]
	return obj, ok
}

// List returns every cached object, ordered by key.
func (s *Store) List() []scheme.Object {
	s.mu.RLock()
	keys := make([]string, 0, len(s.items))
	for k := range s.items {
		keys = append(keys, k)
	}
	out := s.objectsLocked(keys)
	s.mu.RUnlock()
	return out
}

// ByIndex returns the objects whose index function gave value, ordered by key. It fails
// only for an index the informer was not configured with.
func (s *Store) ByIndex(index, value string) ([]scheme.Object, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx, ok := s.indices[index]
	if !ok {
		return nil, fmt.Errorf("informer: no index named %q", index)
	}
	keys := make([]string, 0, len(idx[value]))
	for k := range idx[value] {
		keys = append(keys, k)
	}
	return s.objectsLocked(keys), nil
}

// Len is the number of cached objects.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.items)
}

// objectsLocked sorts keys and returns their objects; s.mu must be held.
func (s *Store) objectsLocked(keys []string) []scheme.Object {
	slices.Sort(keys)
	out := make([]scheme.Object, len(keys))
	for i, k := range keys {
		out[i] = s.items[k]
	}
	return out
}

// put adds or replaces obj, re-indexing it.
func (s *Store) put(obj scheme.Object) {
	key := KeyOf(obj)
	// Index functions run outside the lock: they are user code and may be slow.
	s.mu.RLock()
	indexers, gen := s.indexers, s.indexersGen
	s.mu.RUnlock()
	vals := s.indexValues(indexers, obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.indexersGen { // an index was added meanwhile: include it
		vals = s.indexValues(s.indexers, obj)
	}
	s.unindexLocked(key)
	s.items[key] = obj
	for name, vs := range vals {
		idx := s.indices[name]
		for _, v := range vs {
			set := idx[v]
			if set == nil {
				set = map[string]struct{}{}
				idx[v] = set
			}
			set[key] = struct{}{}
		}
	}
	s.values[key] = vals
}

// remove drops the object with key.
func (s *Store) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unindexLocked(key)
	delete(s.items, key)
}

func (s *Store) unindexLocked(key string) {
	for name, vs := range s.values[key] {
		idx := s.indices[name]
		for _, v := range vs {
			if set := idx[v]; set != nil {
				delete(set, key)
				if len(set) == 0 {
					delete(idx, v)
				}
			}
		}
	}
	delete(s.values, key)
}

// indexValues runs every index function on obj. A failing function leaves the object out of
// that index (and says so) rather than failing the informer: one odd object must not stop
// the cache.
func (s *Store) indexValues(indexers Indexers, obj scheme.Object) map[string][]string {
	vals := make(map[string][]string, len(indexers))
	for name, fn := range indexers {
		vs, err := fn(obj)
		if err != nil {
			s.log.Error("index function failed; object left out of the index", "index", name,
				"key", KeyOf(obj), "error", err)
			continue
		}
		vals[name] = slices.Compact(slices.Sorted(slices.Values(vs)))
	}
	return vals
}

// resourceVersion reads an object's resourceVersion as the revision it is (0 if unset).
func resourceVersion(obj scheme.Object) int64 {
	rv, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	return rv
}
