package informer

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
)

// Factory shares informers within a process, like client-go's SharedInformerFactory: every
// controller that asks for the same kind (and namespace, or node) gets the same Informer, so
// a process running the scheduler, the controllers and a node agent together holds one pod
// cache and one bus subscription per view, not one per controller.
//
// Ask for informers and add handlers and indexers first, then Start; informers asked for
// after Start are started by the next Start call.
type Factory struct {
	client client.Interface
	js     jetstream.JetStream
	live   *bus.Live // shared by the factory's informers
	log    *slog.Logger

	mu        sync.Mutex
	informers map[factoryKey]*Informer
	started   map[factoryKey]bool
	wg        sync.WaitGroup
}

// factoryKey is one view of one kind: all of it, one namespace, or one node's pods.
type factoryKey struct {
	gvk, namespace, node string
}

// NewFactory returns a factory whose informers list through c and follow the bus through js.
func NewFactory(c client.Interface, js jetstream.JetStream, log *slog.Logger) *Factory {
	if log == nil {
		log = slog.Default()
	}
	var live *bus.Live
	if js != nil && c != nil {
		live = bus.NewLive(js, c.Scheme())
	}
	return &Factory{client: c, js: js, live: live, log: log, informers: map[factoryKey]*Informer{}, started: map[factoryKey]bool{}}
}

// Live is the live feeds the factory's informers share (nil without a bus connection).
func (f *Factory) Live() *bus.Live { return f.live }

// Client is the client the factory's informers list with.
func (f *Factory) Client() client.Interface { return f.client }

// For returns the shared informer of every object of kind k.
func (f *Factory) For(k *scheme.Kind) *Informer { return f.get(k, "", "") }

// ForNamespace returns the shared informer of kind k in one namespace.
func (f *Factory) ForNamespace(k *scheme.Kind, namespace string) *Informer {
	return f.get(k, namespace, "")
}

// ForNode returns the shared informer of the pods bound to one node (what a node agent
// follows).
func (f *Factory) ForNode(pods *scheme.Kind, node string) *Informer { return f.get(pods, "", node) }

func (f *Factory) get(k *scheme.Kind, namespace, node string) *Informer {
	key := factoryKey{gvk: k.APIVersion() + "/" + k.Kind, namespace: namespace, node: node}
	f.mu.Lock()
	defer f.mu.Unlock()
	if inf, ok := f.informers[key]; ok {
		return inf
	}
	inf := New(Config{Client: f.client, JetStream: f.js, Live: f.live, Kind: k, Namespace: namespace, NodeName: node, Logger: f.log})
	f.informers[key] = inf
	return inf
}

// Start runs every informer not yet running, each until ctx ends. Shutdown waits for them.
func (f *Factory) Start(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, inf := range f.informers {
		if f.started[key] {
			continue
		}
		f.started[key] = true
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := inf.Run(ctx); err != nil {
				f.log.Error("informer stopped", "kind", key.gvk, "error", err)
			}
		}()
	}
}

// WaitForCacheSync waits until every started informer has synced; false if ctx ended first.
func (f *Factory) WaitForCacheSync(ctx context.Context) bool {
	f.mu.Lock()
	var infs []*Informer
	for key, inf := range f.informers {
		if f.started[key] {
			infs = append(infs, inf)
		}
	}
	f.mu.Unlock()
	return WaitForCacheSync(ctx, infs...)
}

// Shutdown waits for the informers' goroutines to end (cancel Start's context first).
func (f *Factory) Shutdown() { f.wg.Wait() }

// AddIndexers adds indexes to the store, indexing what it already holds. Controllers sharing
// an informer each add the indexes they need; adding an index name twice is an error, so two
// controllers cannot silently disagree about what an index means.
func (s *Store) AddIndexers(indexers Indexers) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range indexers {
		if _, ok := s.indexers[name]; ok {
			return fmt.Errorf("informer: index %q already exists", name)
		}
	}
	next := make(Indexers, len(s.indexers)+len(indexers))
	for name, fn := range s.indexers {
		next[name] = fn
	}
	for name, fn := range indexers {
		next[name] = fn
		idx := map[string]map[string]struct{}{}
		s.indices[name] = idx
		for key, obj := range s.items {
			vals, err := fn(obj)
			if err != nil {
				s.log.Warn("cannot index object", "index", name, "key", key, "error", err)
				continue
			}
			vals = slices.Compact(slices.Sorted(slices.Values(vals)))
			for _, v := range vals {
				if idx[v] == nil {
					idx[v] = map[string]struct{}{}
				}
				idx[v][key] = struct{}{}
			}
			if s.values[key] == nil {
				s.values[key] = map[string][]string{}
			}
			s.values[key][name] = vals
		}
	}
	s.indexers = next
	s.indexersGen++
	return nil
}
