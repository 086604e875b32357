package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Live delivers the bus to a process's readers through one shared live feed per family (a
// kind, a kind in one namespace, or one node's subjects): ONE plain NATS subscription on the
// family's subjects and ONE decode per message, fanned out in process to every reader of the
// family. JetStream stays the source of truth: a feed starts from the stream, and repairs
// from it whenever the chain of family links (HeaderFamilyPrev, HeaderNamespacePrev) shows
// a missing message. Readers read from the feed's ring of recent events, and one that joins
// late or falls behind the ring catches up from the stream on its own, then rejoins the ring;
// so a slow reader never holds the feed up. Filters that are no family read the stream as
// Subscription.Run does. See docs/event-bus.md.
//
// Events from a feed are shared by its readers: their objects must not be modified.
type Live struct {
	sub       *Subscription
	nc        *nats.Conn
	ringSize  int
	liveQueue int
	idleCheck time.Duration
	// dropLive, if set, drops the live messages it returns true for (tests).
	dropLive func(*nats.Msg) bool

	mu    sync.Mutex
	feeds map[string]*feed
	// gapSub receives compaction gap markers for every feed while any runs; lostBefore is
	// the newest revision before which a marker said changes were lost.
	gapSub     *nats.Subscription
	lostBefore atomic.Int64
	// created is the creation time of the stream the Live's feeds read (zero before the
	// first read): a feed that starts after another ended still notices a replaced stream.
	created time.Time

	stats liveCounters
}

// LiveOption tunes a Live.
type LiveOption func(*Live)

// WithRingSize sets how many recent events each feed keeps for readers that join or fall
// behind (default 4096).
func WithRingSize(n int) LiveOption { return func(l *Live) { l.ringSize = max(n, 1) } }

// WithLiveIdleCheck sets about how often an idle feed asks the stream whether it missed
// something (default 15 s, with up to 50% jitter).
func WithLiveIdleCheck(d time.Duration) LiveOption {
	return func(l *Live) { l.idleCheck = max(d, time.Millisecond) }
}

// Defaults of a Live.
const (
	defaultRingSize = 4096
	// defaultLiveQueue bounds the live messages waiting for a feed (while it repairs from the
	// stream, for instance). Beyond it NATS drops messages, which the feed notices as a broken
	// link and repairs.
	defaultLiveQueue = 4096
	// repairWait is how long a repair waits for the stream to hold the message that showed
	// the gap. A message the stream never takes (a deposed publisher's) must not stall the
	// feed: it goes on, and asks the stream for that message again every reconnectPoll.
	repairWait = time.Second
	// repairIdle ends a repair that has read everything the stream holds.
	repairIdle = 50 * time.Millisecond
	// reconnectPoll is how often a feed looks at its connection's reconnect count: live
	// messages published while it was away are lost, and the stream has them.
	reconnectPoll = time.Second
)

// LiveStats counts what a Live did, for tests and diagnostics.
type LiveStats struct {
	Feeds         int64 // feeds started
	Subscriptions int64 // plain NATS subscriptions made
	Decodes       int64 // live messages decoded
	Repairs       int64 // times a feed read the stream to fill a gap (or to start)
	Resyncs       int64 // times a reader caught up from the stream instead of the ring
	Dropped       int64 // live messages dropped by a test hook
}

type liveCounters struct {
	feeds, subscriptions, decodes, repairs, resyncs, dropped atomic.Int64
}

// NewLive reads the bus through js, decoding with s.
func NewLive(js jetstream.JetStream, s *scheme.Scheme, opts ...LiveOption) *Live {
	l := &Live{sub: NewSubscription(js, s), nc: js.Conn(), ringSize: defaultRingSize, liveQueue: defaultLiveQueue,
		idleCheck: defaultIdleCheck, feeds: map[string]*feed{}}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Stats returns the counters.
func (l *Live) Stats() LiveStats {
	c := &l.stats
	return LiveStats{Feeds: c.feeds.Load(), Subscriptions: c.subscriptions.Load(), Decodes: c.decodes.Load(),
		Repairs: c.repairs.Load(), Resyncs: c.resyncs.Load(), Dropped: c.dropped.Load()}
}

// Run is Subscription.Run through the family's shared feed: it calls handle, in stream
// order, for every event on filters newer than after, until ctx is done (nil) or handle fails
// (its error); ErrTooOld means the caller must list again.
func (l *Live) Run(ctx context.Context, filters []string, after int64, handle func(Event) error) error {
	link, ok := familyLink(filters)
	if !ok {
		return l.sub.Run(ctx, filters, after, handle)
	}
	f := l.acquire(filters, link, after)
	defer l.release(f)
	return f.follow(ctx, after, handle)
}

// familyLink returns the header that links a family's messages, if filters are one family:
// every object of a kind (skiff.obj.G.R.*.*), of a kind in one namespace (skiff.obj.G.R.NS.*)
// or every message of a node (skiff.node.N.>).
func familyLink(filters []string) (string, bool) {
	if len(filters) != 1 {
		return "", false
	}
	t := strings.Split(filters[0], ".")
	literal := func(s string) bool { return s != "*" && s != ">" && s != "" }
	switch {
	case len(t) == 6 && t[0] == subjectRoot && t[1] == objectToken && literal(t[2]) && literal(t[3]) && t[5] == "*":
		if t[4] == "*" {
			return HeaderFamilyPrev, true
		}
		if literal(t[4]) {
			return HeaderNamespacePrev, true
		}
	case len(t) == 4 && t[0] == subjectRoot && t[1] == nodeToken && literal(t[2]) && t[3] == ">":
		return HeaderFamilyPrev, true
	}
	return "", false
}

// acquire returns the running feed of filters, starting one from after if there is none.
func (l *Live) acquire(filters []string, link string, after int64) *feed {
	key := filters[0]
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.feeds[key]
	if len(l.feeds) == 0 && l.gapSub == nil {
		// Without it a feed with nothing to read would learn of a compaction gap only at
		// its family's next message; after a marker the publisher's next message of every
		// family is unlinked, so the order between the two subscriptions does not matter.
		sub, err := l.nc.Subscribe(GapSubject, l.onGap)
		if err == nil {
			l.gapSub = sub
			l.stats.subscriptions.Add(1)
		}
	}
	if f == nil || f.failed() {
		f = newFeed(l, filters, link, after)
		l.feeds[key] = f
		l.stats.feeds.Add(1)
		go f.run()
	}
	f.readers++
	return f
}

// release drops a reader; the last one stops the feed.
func (l *Live) release(f *feed) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.readers--
	if f.readers == 0 {
		if l.feeds[f.filters[0]] == f {
			delete(l.feeds, f.filters[0])
		}
		f.cancel()
		if len(l.feeds) == 0 && l.gapSub != nil {
			_ = l.gapSub.Unsubscribe()
			l.gapSub = nil
		}
	}
}

// onGap tells every feed about a compaction gap marker.
func (l *Live) onGap(m *nats.Msg) {
	g, ok := parseGap(0, m.Header)
	if !ok || !g.lost() {
		return
	}
	for {
		cur := l.lostBefore.Load()
		if g.rev-1 <= cur || l.lostBefore.CompareAndSwap(cur, g.rev-1) {
			break
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.feeds {
		select {
		case f.gapWake <- struct{}{}:
		default:
		}
	}
}

// msgPos is a message's place on the bus: its revision, the change's index within the
// revision and the copy (MsgID). A feed's position may also be a whole revision (index and
// copy at their maximum): every message of the family up to that revision.
type msgPos struct {
	rev         int64
	index, copy int
}

func revisionPos(rev int64) msgPos { return msgPos{rev: rev, index: math.MaxInt, copy: math.MaxInt} }

func (p msgPos) less(q msgPos) bool {
	if p.rev != q.rev {
		return p.rev < q.rev
	}
	if p.index != q.index {
		return p.index < q.index
	}
	return p.copy < q.copy
}

// openAfter is the revision a stream reader starts after to read everything after p (p's
// own revision again if p is within it; the reader skips what is not after p).
func (p msgPos) openAfter() int64 {
	if p.index == math.MaxInt {
		return p.rev
	}
	return p.rev - 1
}

// msgPosition reads a message's position from its id; without one it is its revision's.
func msgPosition(h nats.Header, rev int64) msgPos {
	if r, i, c, ok := ParseMsgID(h.Get(jetstream.MsgIDHeader)); ok {
		return msgPos{rev: r, index: i, copy: c}
	}
	return msgPos{rev: rev}
}

// errBehind: the reader's position is older than what the ring holds.
var errBehind = errors.New("bus: reader behind the feed's ring")

// feed is one family's live feed. Its goroutine (run) owns the subscription and the
// position; readers take events from the ring under mu.
type feed struct {
	l       *Live
	filters []string
	link    string // the header that links the family's messages
	ctx     context.Context
	cancel  context.CancelFunc
	readers int // under l.mu
	gapWake chan struct{}

	// Owned by run's goroutine.
	pos     msgPos    // the last event appended (or the revision the feed started after)
	created time.Time // the stream's creation time when the feed first read it
	// reconnects is the connection's reconnect count last seen; checkDue says a check of the
	// stream (check) is due since checkAfter: after a reconnect it runs before any live
	// message is taken.
	reconnects int64
	checkDue   bool
	checkAfter time.Time
	// awaited is a message seen live that a repair did not find in the stream yet (NATS
	// stores and delivers concurrently; under load storing can lag): the feed asks the stream
	// again every reconnectPoll until it has it, rather than waiting for the next message
	// or the idle check.
	awaited msgPos

	mu    sync.Mutex
	ring  []Event // grows up to size, then wraps
	size  uint64
	head  uint64 // events ever appended; the newest is ring[(head-1)%size]
	cover msgPos // every event after cover is in the ring (or still to come)
	wake  chan struct{}
	err   error // why the feed stopped; readers return it
	done  chan struct{}
}

func newFeed(l *Live, filters []string, link string, after int64) *feed {
	ctx, cancel := context.WithCancel(context.Background())
	start := revisionPos(after)
	return &feed{l: l, filters: filters, link: link, ctx: ctx, cancel: cancel, pos: start, cover: start,
		size: uint64(l.ringSize), wake: make(chan struct{}), done: make(chan struct{}), gapWake: make(chan struct{}, 1)}
}

func (f *feed) failed() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// run follows the family until the feed is cancelled or fails; its error goes to readers.
func (f *feed) run() {
	err := f.follow0()
	if err == nil {
		err = errors.New("bus: live feed stopped")
	}
	f.mu.Lock()
	f.err = err
	close(f.done)
	close(f.wake)
	f.mu.Unlock()
}

func (f *feed) follow0() error {
	ctx := f.ctx
	// Subscribe before reading the stream, so that nothing published meanwhile is missed.
	live := make(chan *nats.Msg, f.l.liveQueue)
	sub, err := f.l.nc.ChanSubscribe(f.filters[0], live)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", f.filters[0], err)
	}
	f.l.stats.subscriptions.Add(1)
	defer func() { _ = sub.Unsubscribe() }()
	// From the flush on, the server delivers everything published to the subscription.
	f.reconnects = int64(f.l.nc.Stats().Reconnects)
	if err := f.l.nc.FlushTimeout(attemptTimeout); err != nil {
		return fmt.Errorf("subscribe %s: %w", f.filters[0], err)
	}
	if err := f.start(ctx); err != nil {
		return err
	}
	// A message published before the subscription took effect may reach the stream only after
	// the repair read it to the end: look once more at the next poll.
	f.checkDue, f.checkAfter = true, time.Now()
	poll := time.NewTicker(reconnectPoll)
	defer poll.Stop()
	idle := f.l.idleCheck
	nextCheck := time.Now().Add(idle + rand.N(idle/2+1))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-f.gapWake:
			if f.pos.rev < f.l.lostBefore.Load() {
				return ErrTooOld
			}
		case m := <-live:
			if err := f.take(ctx, m); err != nil {
				return err
			}
			nextCheck = time.Now().Add(idle + rand.N(idle/2+1))
		case <-poll.C:
			// Take what has already arrived first: a check or repair now would find those
			// messages in the stream and read them again from there, for nothing.
			if err := f.drain(ctx, live); err != nil {
				return err
			}
			if f.pos.less(f.awaited) {
				if err := f.repair(ctx, f.awaited); err != nil {
					return err
				}
			}
			f.noticeReconnect()
			if !f.checkDue && time.Now().Before(nextCheck) {
				continue
			}
			if err := f.runCheck(ctx); err != nil {
				return err
			}
			nextCheck = time.Now().Add(idle + rand.N(idle/2+1))
		}
	}
}

// start reads from the stream what the family published after the feed's start revision,
// before it takes messages live. Most feeds start from a fresh list with nothing to read: a
// look at the stream's state (shared by the Live's feeds) and at the family's last message
// says so without a consumer, which matters when a thousand node agents start at once.
// Anything else, or a look that fails, is a repair.
func (f *feed) start(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	st, err := f.l.sub.readState(cctx, time.Now().Add(-stateMaxAge))
	if err != nil {
		return f.repair(ctx, msgPos{})
	}
	if err := f.sameStream(st.info.Created); err != nil {
		return err
	}
	switch err := covers(cctx, f.l.sub.js, st.stream, st, f.pos.rev); {
	case errors.Is(err, ErrTooOld):
		return err
	case err != nil:
		return f.repair(ctx, msgPos{})
	}
	m, err := st.stream.GetLastMsgForSubject(cctx, f.filters[0])
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil // the family published nothing since: the stream covers the start
	case err != nil:
		return f.repair(ctx, msgPos{})
	}
	if id, ok := parseID(m.Header); ok && !f.pos.less(id) {
		return nil // its last message is at or before the start
	}
	return f.repair(ctx, msgPos{})
}

// drain takes the live messages already queued, without waiting for more.
func (f *feed) drain(ctx context.Context, live <-chan *nats.Msg) error {
	for range len(live) {
		if err := f.take(ctx, <-live); err != nil {
			return err
		}
	}
	return nil
}

// noticeReconnect makes a check due if the connection reconnected since last seen: a check
// that cannot run yet (the stream not back) stays due, and its state must be read after the
// reconnect.
func (f *feed) noticeReconnect() {
	if r := int64(f.l.nc.Stats().Reconnects); r != f.reconnects {
		f.reconnects, f.checkDue, f.checkAfter = r, true, time.Now()
	}
}

func (f *feed) runCheck(ctx context.Context) error {
	done, err := f.check(ctx, f.checkAfter)
	if done {
		f.checkDue = false
	}
	return err
}

// take handles one live message.
func (f *feed) take(ctx context.Context, m *nats.Msg) error {
	if d := f.l.dropLive; d != nil && d(m) {
		f.l.stats.dropped.Add(1)
		return nil
	}
	// After a reconnect the stream may have been replaced (a memory stream after a NATS
	// restart, refilled from etcd): nothing is taken live before that is checked.
	f.noticeReconnect()
	if f.checkDue {
		if err := f.runCheck(ctx); err != nil {
			return err
		}
	}
	id, ok := parseID(m.Header)
	if !ok {
		return f.repair(ctx, msgPos{})
	}
	prev, linked := parseLink(m.Header, f.link)
	if !f.pos.less(id) {
		if !linked {
			// Already had, yet the start of a publisher's term (or of a new stream, which
			// a publisher refills from etcd): make sure the stream is the same.
			return f.repair(ctx, msgPos{})
		}
		return nil // already had it (read from the stream)
	}
	// Linked: the family's message before this one is at or before our position, so nothing
	// lies between.
	if !linked || f.pos.less(prev) {
		return f.repair(ctx, id)
	}
	ev, err := f.l.sub.decode(m.Subject, m.Header, m.Data)
	if err != nil {
		return err
	}
	f.l.stats.decodes.Add(1)
	ev.pos = id
	f.append(ev)
	return nil
}

func parseID(h nats.Header) (msgPos, bool) {
	r, i, c, ok := ParseMsgID(h.Get(jetstream.MsgIDHeader))
	return msgPos{rev: r, index: i, copy: c}, ok
}

func parseLink(h nats.Header, link string) (msgPos, bool) {
	r, i, c, ok := ParseMsgID(h.Get(link))
	return msgPos{rev: r, index: i, copy: c}, ok
}

// repair reads the stream from the feed's position until it holds target (if given) and
// everything the stream has, appending what it reads. Messages that arrive live meanwhile
// wait; those it read from the stream are then skipped.
func (f *feed) repair(ctx context.Context, target msgPos) error {
	f.l.stats.repairs.Add(1)
	r, err := f.l.sub.Open(ctx, f.filters, f.pos.openAfter())
	if err != nil {
		return err
	}
	defer r.Close()
	if err := f.sameStream(r.created); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, r.msgs.Stop)
	defer stop()
	if f.awaited.less(target) {
		f.awaited = target
	}
	began := time.Now()
	for {
		wait := repairIdle
		if f.pos.less(target) {
			wait = max(repairWait-time.Since(began), time.Millisecond)
		}
		res, err := r.next(ctx, wait)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if res.timeout {
			return nil // the stream holds nothing more (or never took target)
		}
		if res.has && f.pos.less(res.ev.pos) {
			f.append(res.ev)
		}
		if res.pending == 0 && !f.pos.less(target) {
			return nil
		}
	}
}

// check runs after a reconnect and when the feed has been idle for a while: live messages
// may have been lost (NATS drops them for a subscriber that is away), and the stream may have
// been replaced. It repairs if the stream holds a family message newer than the position.
// done is false when the stream could not be asked (NATS busy, or the stream not back yet
// after a restart); the state it reads is no older than notBefore.
func (f *feed) check(ctx context.Context, notBefore time.Time) (done bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	if fresh := time.Now().Add(-stateMaxAge); notBefore.Before(fresh) {
		notBefore = fresh
	}
	st, err := f.l.sub.readState(cctx, notBefore)
	if err != nil {
		return false, nil
	}
	if err := f.sameStream(st.info.Created); err != nil {
		return true, err
	}
	m, err := st.stream.GetLastMsgForSubject(cctx, f.filters[0])
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, nil
	}
	if err != nil {
		return false, nil
	}
	if id, ok := parseID(m.Header); ok && f.pos.less(id) {
		return true, f.repair(ctx, id)
	}
	return true, nil
}

// sameStream returns ErrTooOld if the stream (created then) is not the one the feed, or
// before it the Live, read: it was replaced, and what it held before is gone. The Live then
// expects the new one, which its readers' relists start on.
func (f *feed) sameStream(created time.Time) error {
	l := f.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if f.created.IsZero() {
		f.created = l.created
	}
	if f.created.IsZero() {
		f.created, l.created = created, created
		return nil
	}
	if !created.Equal(f.created) {
		l.created = created
		return ErrTooOld
	}
	return nil
}

// append puts ev on the ring and wakes the readers.
func (f *feed) append(ev Event) {
	f.pos = ev.pos
	f.mu.Lock()
	if f.head < f.size {
		f.ring = append(f.ring, ev)
	} else {
		slot := f.head % f.size
		f.cover = f.ring[slot].pos // about to be overwritten
		f.ring[slot] = ev
	}
	f.head++
	close(f.wake)
	f.wake = make(chan struct{})
	f.mu.Unlock()
}

// follow delivers the family's events after revision after to handle: from the ring when it
// covers the reader's position, else from the stream until it does.
func (f *feed) follow(ctx context.Context, after int64, handle func(Event) error) error {
	pos := revisionPos(after)
	for {
		err := f.fromRing(ctx, &pos, handle)
		if !errors.Is(err, errBehind) {
			return err
		}
		f.l.stats.resyncs.Add(1)
		if err := f.catchUp(ctx, &pos, handle); err != nil {
			return err
		}
	}
}

// fromRing delivers ring events after *pos until ctx is done (nil), handle or the feed
// fails, or the ring no longer holds what comes after *pos (errBehind).
func (f *feed) fromRing(ctx context.Context, pos *msgPos, handle func(Event) error) error {
	var next uint64 // the ring index of the next event to look at; 0: find it
	found := false
	batch := make([]Event, 0, 64)
	for {
		f.mu.Lock()
		n := f.size
		oldest := f.head - min(f.head, n)
		if pos.less(f.cover) {
			err := f.err
			f.mu.Unlock()
			if err != nil {
				return err
			}
			return errBehind
		}
		if !found || next < oldest {
			// The first event after pos: events are in order, so search.
			lo, hi := oldest, f.head
			for lo < hi {
				mid := lo + (hi-lo)/2
				if pos.less(f.ring[mid%n].pos) {
					hi = mid
				} else {
					lo = mid + 1
				}
			}
			next, found = lo, true
		}
		batch = batch[:0]
		for ; next < f.head && len(batch) < cap(batch); next++ {
			batch = append(batch, f.ring[next%n])
		}
		wake, err := f.wake, f.err
		f.mu.Unlock()
		for _, ev := range batch {
			if !pos.less(ev.pos) {
				continue
			}
			if err := handle(ev); err != nil {
				return err
			}
			*pos = ev.pos
		}
		if len(batch) > 0 {
			continue
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		}
	}
}

// catchUp delivers events after *pos from the stream until the ring covers *pos again.
func (f *feed) catchUp(ctx context.Context, pos *msgPos, handle func(Event) error) error {
	r, err := f.l.sub.Open(ctx, f.filters, pos.openAfter())
	if err != nil {
		return err
	}
	defer r.Close()
	stop := context.AfterFunc(ctx, r.msgs.Stop)
	defer stop()
	for {
		if f.covers(*pos) {
			return nil
		}
		res, err := r.next(ctx, repairIdle)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if res.timeout {
			if f.failed() {
				return f.feedErr()
			}
			continue
		}
		if !res.has || !pos.less(res.ev.pos) {
			continue
		}
		if err := handle(res.ev); err != nil {
			return err
		}
		*pos = res.ev.pos
	}
}

// covers reports whether the ring holds every event after pos.
func (f *feed) covers(pos msgPos) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !pos.less(f.cover)
}

func (f *feed) feedErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
