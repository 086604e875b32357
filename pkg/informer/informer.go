// Package informer keeps a local, indexed cache of one kind of API object and tells
// handlers about every change to it. It is what Skiff's controllers, kubelets and users' own
// controllers build on, like client-go's shared informer; but where client-go watches the
// apiserver (and so etcd), an informer here reads the event bus (pkg/bus): it lists once,
// then follows the bus from the list's revision.
//
// The cycle, as client-go's reflector and DeltaFIFO, simplified:
//
//   - list the kind (in pages of 500) at revision R and make the cache equal to it, telling
//     handlers what was added, changed and removed;
//   - follow the bus from R, applying each change to the cache and telling handlers;
//   - if the bus no longer holds the changes after the informer's revision (they aged out of
//     the stream), list again;
//   - on any other failure (NATS or the apiserver down), retry with back-off and resume from
//     where the cache is, without listing.
//
// A typical controller:
//
//	inf := informer.New(informer.Config{Client: c, JetStream: js, Kind: pods})
//	inf.AddEventHandler(informer.HandlerFuncs{
//		AddFunc:    func(obj scheme.Object) { queue.Add(informer.KeyOf(obj)) },
//		UpdateFunc: func(_, obj scheme.Object) { queue.Add(informer.KeyOf(obj)) },
//		DeleteFunc: func(obj scheme.Object) { queue.Add(informer.KeyOf(obj)) },
//	})
//	go inf.Run(ctx)
//	if !informer.WaitForCacheSync(ctx, inf) { return }
//	// workers: key := queue.Get(); obj, ok := inf.Store().GetByKey(key); ...
package informer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/fields"
)

// Config configures an Informer.
type Config struct {
	// Client lists the kind.
	Client client.Interface
	// JetStream reads the event bus.
	JetStream jetstream.JetStream
	// Live, if set, is the process's shared live feeds (bus.Live over JetStream's
	// connection): every informer given the same Live and following the same kind and
	// namespace (or node) shares one NATS subscription and one decode of each change. nil
	// gives the informer feeds of its own. Factory shares one among its informers.
	Live *bus.Live
	// Kind is the kind to cache.
	Kind *scheme.Kind
	// Namespace restricts the cache to one namespace; "" caches all of them.
	Namespace string
	// NodeName (pods only) restricts the cache to the pods bound to that node: what a node
	// agent needs. The informer then reads the node's bus subjects, which also carry a pod's
	// arrival on the node (its binding) as ADDED.
	NodeName string
	// Indexers are extra indexes of the Store; NamespaceIndex is added unless present.
	Indexers Indexers
	// Logger logs relists and retries; nil means slog.Default().
	Logger *slog.Logger
}

// listPageSize bounds each page of a list, so a large kind does not make one huge response.
const listPageSize = 500

// Back-off between retries after failures.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Informer caches one kind of object and tells handlers about changes. Create it with New,
// add handlers, and call Run once.
type Informer struct {
	cfg      Config
	log      *slog.Logger
	filters  []string
	listOpts client.ListOptions
	store    *Store
	// subscribe reads the bus (bus.Live.Run); a field so internal tests can inject
	// failures.
	subscribe func(ctx context.Context, filters []string, after int64, handle func(bus.Event) error) error

	started  atomic.Bool
	synced   atomic.Bool
	syncedCh chan struct{} // closed once synced
	lastRev  atomic.Int64
	relists  atomic.Int64

	// complete is the newest revision all of whose events have been applied; the bus is
	// resumed after it. It trails lastRev because one revision (one etcd transaction) may
	// change several objects, and a failure can come between them. Owned by Run's goroutine.
	complete int64

	mu sync.Mutex
	// handlers receive events. Appended under mu, read without it by Run's goroutine,
	// which is the only writer while Run runs.
	handlers []ResourceEventHandler
	// pending are handlers added while Run runs, for Run's goroutine to adopt (after
	// replaying the cache to them), so that a new handler never sees a change before the
	// OnAdd of the object.
	pending []ResourceEventHandler
	stopped bool          // Run has returned: AddEventHandler adopts handlers itself
	wake    chan struct{} // tells Run's goroutine that pending is not empty
}

// New returns an informer for cfg. It panics on a Config that cannot work (a missing Client,
// JetStream or Kind; NodeName for a kind other than pods; a namespace for a cluster-scoped
// kind; a FieldIndexFunc whose path the kind does not have): those are programming errors.
func New(cfg Config) *Informer {
	switch {
	case cfg.Client == nil || cfg.JetStream == nil || cfg.Kind == nil:
		panic("informer: Config needs Client, JetStream and Kind")
	case cfg.NodeName != "" && (cfg.Kind.Group != "" || cfg.Kind.Kind != "Pod"):
		panic(fmt.Sprintf("informer: NodeName applies to pods only, not %s", cfg.Kind.GroupResource()))
	case cfg.Namespace != "" && !cfg.Kind.Namespaced:
		panic(fmt.Sprintf("informer: %s are cluster-scoped; Namespace must be empty", cfg.Kind.GroupResource()))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("informer", cfg.Kind.GroupResource())
	if cfg.Namespace != "" {
		log = log.With("namespace", cfg.Namespace)
	}
	if cfg.NodeName != "" {
		log = log.With("node", cfg.NodeName)
	}

	indexers := Indexers{NamespaceIndex: MetaNamespaceIndexFunc}
	for name, fn := range cfg.Indexers {
		indexers[name] = fn
	}
	// Catch a mistyped field path now rather than as a log line per object.
	probe := cfg.Kind.New()
	for name, fn := range indexers {
		if _, err := fn(probe); errors.Is(err, fields.ErrPath) {
			panic(fmt.Sprintf("informer: index %q: %v", name, err))
		}
	}

	i := &Informer{
		cfg:      cfg,
		log:      log,
		listOpts: client.ListOptions{Limit: listPageSize},
		store:    newStore(indexers, log),
		syncedCh: make(chan struct{}),
		wake:     make(chan struct{}, 1),
	}
	if cfg.NodeName != "" {
		i.filters = []string{bus.NodeFilter(cfg.NodeName)}
		i.listOpts.FieldSelector = "spec.nodeName=" + cfg.NodeName
	} else {
		i.filters = []string{bus.KindFilter(cfg.Kind, cfg.Namespace)}
	}
	live := cfg.Live
	if live == nil {
		live = bus.NewLive(cfg.JetStream, cfg.Client.Scheme())
	}
	i.subscribe = live.Run
	return i
}

// Store is the informer's cache.
func (i *Informer) Store() *Store { return i.store }

// HasSynced is true once the initial list is in the cache and handlers were told about it.
func (i *Informer) HasSynced() bool { return i.synced.Load() }

// LastRevision is the revision of the newest change (or list) applied to the cache.
func (i *Informer) LastRevision() int64 { return i.lastRev.Load() }

// Relists counts the lists made because the bus no longer held the changes the informer
// needed (the initial list is not counted).
func (i *Informer) Relists() int { return int(i.relists.Load()) }

// AddEventHandler adds a handler; it may be called before or while Run runs (not from a
// handler). A handler added after the informer synced first gets OnAdd for every cached
// object, then the changes that follow.
func (i *Informer) AddEventHandler(h ResourceEventHandler) {
	i.mu.Lock()
	if i.stopped {
		// No goroutine will deliver anything any more: replay the cache here.
		i.handlers = append(i.handlers, h)
		i.mu.Unlock()
		i.replay(h)
		return
	}
	i.pending = append(i.pending, h)
	i.mu.Unlock()
	select {
	case i.wake <- struct{}{}:
	default: // a wake-up is already due
	}
}

// WaitForCacheSync waits until every informer has synced; false if ctx ended first.
func WaitForCacheSync(ctx context.Context, informers ...*Informer) bool {
	for _, inf := range informers {
		if inf.HasSynced() {
			continue
		}
		select {
		case <-inf.syncedCh:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Run fills the cache and keeps it current until ctx is done, then returns nil. Failures
// are retried for ever (see the package comment). Run may be called once; handlers are
// called from its goroutine.
func (i *Informer) Run(ctx context.Context) error {
	if !i.started.CompareAndSwap(false, true) {
		return errors.New("informer: Run called more than once")
	}
	return i.run(ctx, true)
}

// run is Run's loop. With list false it starts by resuming the bus after i.complete instead
// of listing (internal tests use that to start from a stale revision).
func (i *Informer) run(ctx context.Context, list bool) error {
	i.mu.Lock()
	i.stopped = false
	i.mu.Unlock()
	defer i.stop()
	i.adoptPending()
	var b backoff
	tooOld := false // the last subscription ended with ErrTooOld, and nothing came since
	for ctx.Err() == nil {
		if list {
			if err := i.relist(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				d := b.next()
				i.log.Warn("list failed; retrying", "error", err, "retryIn", d)
				i.sleep(ctx, d)
				continue
			}
			list = false
		}

		began := time.Now()
		progressed, err := i.watch(ctx, i.complete)
		if ctx.Err() != nil {
			break
		}
		// Success resets the back-off: events flowed, or the subscription held for a while.
		if progressed || time.Since(began) >= maxBackoff {
			b.reset()
			tooOld = false
		}
		if errors.Is(err, bus.ErrTooOld) {
			i.relists.Add(1)
			i.log.Info("the bus no longer holds the changes after our revision; relisting", "revision", i.complete)
			// A relist is the cure for ErrTooOld, so it comes at once; but a relist that does
			// not cure it (the stream lost everything and its watermark too) must not spin.
			if tooOld {
				i.sleep(ctx, b.next())
			}
			tooOld = true
			list = true
			continue
		}
		d := b.next()
		i.log.Warn("bus subscription failed; resuming", "after", i.complete, "error", err, "retryIn", d)
		i.sleep(ctx, d)
	}
	return nil
}

// relist lists the kind and makes the cache equal to the list.
func (i *Informer) relist(ctx context.Context) error {
	list, err := client.ListAll(ctx, i.cfg.Client, i.cfg.Kind, i.cfg.Namespace, i.listOpts)
	if err != nil {
		return err
	}
	rev, err := strconv.ParseInt(list.ResourceVersion, 10, 64)
	if err != nil || rev <= 0 {
		return fmt.Errorf("list has no usable resourceVersion %q", list.ResourceVersion)
	}
	i.replace(list.Items, rev)
	return nil
}

// replace makes the cache equal to items, listed at revision rev: objects gone are deleted,
// new ones added, ones at another resourceVersion updated; unchanged ones are not reported.
func (i *Informer) replace(items []scheme.Object, rev int64) {
	fresh := make(map[string]scheme.Object, len(items))
	for _, obj := range items {
		fresh[KeyOf(obj)] = obj
	}
	for _, old := range i.store.List() {
		key := KeyOf(old)
		if _, ok := fresh[key]; !ok {
			i.store.remove(key)
			i.notifyDelete(old)
		}
	}
	for _, obj := range items {
		cur, ok := i.store.GetByKey(KeyOf(obj))
		switch {
		case !ok:
			i.store.put(obj)
			i.notifyAdd(obj)
		case resourceVersion(cur) != resourceVersion(obj):
			i.store.put(obj)
			i.notifyUpdate(cur, obj)
		}
	}
	i.complete = rev
	i.lastRev.Store(rev)
	if !i.synced.Load() {
		i.synced.Store(true)
		close(i.syncedCh)
	}
}

// watch follows the bus after revision after until it fails (its error) or ctx is done
// (nil). progressed says whether any event arrived.
//
// The subscription runs on its own goroutine and hands events over one at a time, so that
// this goroutine can also adopt new handlers while the bus is quiet.
func (i *Informer) watch(ctx context.Context, after int64) (progressed bool, err error) {
	subCtx, cancel := context.WithCancel(ctx)
	events := make(chan bus.Event)
	done := make(chan error, 1)
	go func() {
		done <- i.subscribe(subCtx, i.filters, after, func(ev bus.Event) error {
			select {
			case events <- ev:
				return nil
			case <-subCtx.Done():
				return subCtx.Err()
			}
		})
	}()
	finished := false
	defer func() {
		cancel()
		if !finished {
			<-done
		}
	}()
	for {
		select {
		case ev := <-events:
			progressed = true
			if err := i.apply(ctx, ev); err != nil {
				return progressed, err
			}
		case <-i.wake:
			i.adoptPending()
		case err := <-done:
			// Every event handed over was received before the subscription returned: the
			// channel is unbuffered.
			finished = true
			if err == nil && ctx.Err() == nil {
				err = errors.New("bus subscription ended")
			}
			return progressed, err
		case <-ctx.Done():
			return progressed, nil
		}
	}
}

// apply applies one bus event to the cache and tells the handlers. It fails only when the
// object of an oversize event cannot be fetched; the informer then resumes the bus from before
// the event.
func (i *Informer) apply(ctx context.Context, ev bus.Event) error {
	prev := i.lastRev.Load()
	if ev.Revision > prev {
		// The stream is in revision order: every event of older revisions has been applied.
		i.complete = prev
	}
	if err := i.applyObject(ctx, ev); err != nil {
		return err
	}
	if ev.Revision > prev {
		// Published after the cache changed, so a reader that sees the revision sees the change.
		i.lastRev.Store(ev.Revision)
	}
	return nil
}

func (i *Informer) applyObject(ctx context.Context, ev bus.Event) error {
	if ev.Kind == nil || ev.Kind.APIVersion() != i.cfg.Kind.APIVersion() || ev.Kind.Kind != i.cfg.Kind.Kind {
		return nil // node subjects could carry other kinds
	}
	obj := ev.Object
	key := KeyOf(obj)
	cur, cached := i.store.GetByKey(key)
	if cached && ev.Revision <= resourceVersion(cur) {
		return nil // seen already: redelivered after a resume, or older than the list
	}
	typ := ev.Type
	if ev.Oversize && typ != bus.Deleted {
		// The bus could not carry the object: read it from the API (its current state).
		md := obj.GetMetadata()
		fetched, err := i.cfg.Client.Get(ctx, i.cfg.Kind, md.GetNamespace(), md.GetName())
		switch {
		case apierrors.IsNotFound(err):
			typ = bus.Deleted // gone since
		case err != nil:
			return fmt.Errorf("fetch %s for its oversize event at revision %d: %w", key, ev.Revision, err)
		case cached && resourceVersion(fetched) <= resourceVersion(cur):
			return nil
		default:
			obj = fetched
		}
	}
	if typ != bus.Deleted && !i.selects(obj) {
		typ = bus.Deleted // the object left what the informer caches (e.g. a pod off its node)
	}
	switch typ {
	case bus.Added, bus.Modified:
		i.store.put(obj)
		if cached {
			i.notifyUpdate(cur, obj)
		} else {
			i.notifyAdd(obj)
		}
	case bus.Deleted:
		if !cached {
			return nil
		}
		if ev.Oversize {
			obj = cur // the last state the informer knows
		}
		i.store.remove(key)
		i.notifyDelete(obj)
	default:
		i.log.Warn("ignoring bus event of unknown type", "type", ev.Type, "key", key, "revision", ev.Revision)
	}
	return nil
}

// selects reports whether obj belongs in the cache: in the informer's namespace and, for a
// node's informer, bound to the node. The bus's subjects already select; an object read from
// the API, or a change that moves it elsewhere, may not be.
func (i *Informer) selects(obj scheme.Object) bool {
	if i.cfg.Namespace != "" && obj.GetMetadata().GetNamespace() != i.cfg.Namespace {
		return false
	}
	if i.cfg.NodeName != "" {
		node, err := fields.Value(obj.ProtoReflect(), "spec.nodeName")
		return err == nil && node == i.cfg.NodeName
	}
	return true
}

func (i *Informer) notifyAdd(obj scheme.Object) {
	for _, h := range i.handlers {
		h.OnAdd(obj)
	}
}

func (i *Informer) notifyUpdate(oldObj, newObj scheme.Object) {
	for _, h := range i.handlers {
		h.OnUpdate(oldObj, newObj)
	}
}

func (i *Informer) notifyDelete(obj scheme.Object) {
	for _, h := range i.handlers {
		h.OnDelete(obj)
	}
}

// adoptPending makes handlers added while Run runs live, first replaying the cache to them
// if it is synced (if not, the initial list will reach them as OnAdds).
func (i *Informer) adoptPending() {
	i.mu.Lock()
	pending := i.pending
	i.pending = nil
	i.mu.Unlock()
	for _, h := range pending {
		i.replay(h)
		i.mu.Lock()
		i.handlers = append(i.handlers, h)
		i.mu.Unlock()
	}
}

// replay tells h about every cached object, if the cache is synced.
func (i *Informer) replay(h ResourceEventHandler) {
	if !i.synced.Load() {
		return
	}
	for _, obj := range i.store.List() {
		h.OnAdd(obj)
	}
}

// stop ends Run: from now on AddEventHandler replays the cache itself.
func (i *Informer) stop() {
	i.mu.Lock()
	i.stopped = true
	pending := i.pending
	i.pending = nil
	i.handlers = append(i.handlers, pending...)
	i.mu.Unlock()
	for _, h := range pending {
		i.replay(h)
	}
}

// sleep waits d or until ctx is done, adopting new handlers meanwhile.
func (i *Informer) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-i.wake:
			i.adoptPending()
		}
	}
}

// backoff is "decorrelated jitter": each delay is drawn from [minBackoff, 3 × the previous
// one], capped at maxBackoff, so that the many informers one failure hits do not retry in
// lockstep, while a failure that lasts still backs off towards maxBackoff.
type backoff struct{ last time.Duration }

func (b *backoff) next() time.Duration {
	upper := 3 * max(b.last, minBackoff)
	b.last = min(minBackoff+rand.N(upper-minBackoff+1), maxBackoff)
	return b.last
}

func (b *backoff) reset() { b.last = 0 }
