package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Event is one change read from the bus.
type Event struct {
	Type   EventType
	Kind   *scheme.Kind
	Object scheme.Object // its resourceVersion is Revision
	// PrevObject is the object's previous value, carried by MODIFIED events whose labels or
	// selectable fields changed (resourceVersion Revision too). When it is nil on a MODIFIED
	// event, the previous value had Object's labels and selectable fields: every label or field
	// selector matched it exactly as it matches Object.
	PrevObject scheme.Object
	// Oversize: the change was too large for the bus. Object then holds only the kind, name,
	// namespace and resourceVersion; its owner fetches the object from the API.
	Oversize bool
	Revision int64
	Sequence uint64 // the stream sequence, for diagnostics (0 for an event read live)
	// pos is the message's place in its family (its Nats-Msg-Id), which orders the events of
	// one revision.
	pos msgPos
}

// Subscription opens readers of the stream. One Subscription serves any number of readers
// (an apiserver uses one for all its watches): it keeps the stream's handle and shares recent
// reads of the stream's state between them, so that opening many readers at once costs
// JetStream little more than one consumer each.
type Subscription struct {
	js        jetstream.JetStream
	scheme    *scheme.Scheme
	idleCheck time.Duration

	mu      sync.Mutex
	stream  jetstream.Stream // nil until first looked up
	state   *streamState     // the newest state read
	reading *stateRead       // the read in progress, if any
}

// Option tunes a Subscription.
type Option func(*Subscription)

// WithIdleCheck sets about how often a reader with nothing to read checks that its stream is
// still the one it started on (default 15 s, with up to 50% jitter so that thousands of idle
// readers do not ask at once).
func WithIdleCheck(d time.Duration) Option {
	return func(s *Subscription) { s.idleCheck = max(d, time.Millisecond) }
}

// NewSubscription reads the stream through js.
func NewSubscription(js jetstream.JetStream, s *scheme.Scheme, opts ...Option) *Subscription {
	sub := &Subscription{js: js, scheme: s, idleCheck: defaultIdleCheck}
	for _, o := range opts {
		o(sub)
	}
	return sub
}

// Run calls handle, in stream order, for every event on filters whose revision is newer than
// after, until ctx is done (nil) or handle fails (its error). It returns ErrTooOld when events
// newer than after have aged out of the stream or were lost to a compaction gap: the caller
// must list again.
func (s *Subscription) Run(ctx context.Context, filters []string, after int64, handle func(Event) error) error {
	r, err := s.Open(ctx, filters, after)
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Run(ctx, handle)
}

// Reader is an open subscription whose start point has been checked.
type Reader struct {
	sub      *Subscription
	msgs     jetstream.MessagesContext
	consumer jetstream.Consumer
	after    int64
	// created identifies the stream: a stream recreated under the same name (a memory stream
	// after a NATS restart) starts its sequences over, so positions in the old one mean nothing.
	created time.Time
	// lastSeq is the stream sequence of the last message read (start-1 before the first), and
	// lastRev its revision (0 before the first).
	lastSeq uint64
	lastRev int64
	// consumerName names the consumer the last message came from. A message from another one
	// means the ordered consumer recreated itself.
	consumerName string
	// checkFrom, when non-zero, is the first sequence a recreated consumer should have
	// delivered, while the coverage check of that reset has not succeeded yet; resetAt is when
	// the reset was noticed (the check needs a state read after it).
	checkFrom uint64
	resetAt   time.Time
}

// defaultIdleCheck is about how often a reader with nothing to read checks that its stream is
// still the one it started on.
const defaultIdleCheck = 15 * time.Second

// consumerIdleTimeout is how long NATS keeps the consumer of a reader that went away without
// deleting it (a crashed process).
const consumerIdleTimeout = 30 * time.Second

// JetStream API requests time out when NATS is busy (hundreds of readers opening at once).
// Each attempt gets attemptTimeout; attempts repeat within the caller's context, and within
// openTimeout when the caller's context has no deadline (a watch request).
const (
	attemptTimeout = 5 * time.Second
	openTimeout    = 30 * time.Second
)

// stateMaxAge is how old a shared read of the stream's state may be for opening a reader or
// an idle identity check. Staleness is safe: a start found from an older state is at or
// before the true one (the reader drops what it does not need), and the consumer itself
// tells whether the start is still held.
const stateMaxAge = 500 * time.Millisecond

// Open checks that the stream still covers everything after revision after (ErrTooOld if
// not) and positions a reader there. Opening first lets a server refuse a stale start with a
// status before it starts streaming.
//
// Delivery rides an ordered consumer, which notices its own gaps and recreates itself from
// the last sequence it delivered, also across NATS restarts. Its filters are filters plus
// GapSubject, so that compaction gap markers arrive in stream order.
func (s *Subscription) Open(ctx context.Context, filters []string, after int64) (*Reader, error) {
	ctx, cancel := withDefaultTimeout(ctx, openTimeout)
	defer cancel()
	notBefore := time.Now().Add(-stateMaxAge)
	for attempt := 1; ; attempt++ {
		r, err := s.open(ctx, filters, after, notBefore)
		var stale *staleStateError
		if !errors.As(err, &stale) {
			return r, err
		}
		if attempt == 3 {
			return nil, stale.err
		}
		// The shared state was older than what retention dropped since: read it again.
		notBefore = time.Now()
	}
}

// staleStateError: the stream dropped messages after the state open used was read; err is
// what to answer if a fresh state does not help.
type staleStateError struct{ err error }

func (e *staleStateError) Error() string { return e.err.Error() }

func (s *Subscription) open(ctx context.Context, filters []string, after int64, notBefore time.Time) (*Reader, error) {
	st, err := retry(ctx, "stream state", func(ctx context.Context) (*streamState, error) {
		return s.readState(ctx, notBefore)
	})
	if err != nil {
		return nil, err
	}
	start, err := retry(ctx, "start sequence", func(ctx context.Context) (uint64, error) {
		return startSequence(ctx, s.js, st.stream, st, after)
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, &staleStateError{err}
	}
	if err != nil {
		return nil, err
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    withGapSubject(filters),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: consumerIdleTimeout,
	}
	cons, err := retry(ctx, fmt.Sprintf("consumer from %d", start), func(ctx context.Context) (jetstream.Consumer, error) {
		return s.js.OrderedConsumer(ctx, StreamName, cfg)
	})
	if err != nil {
		return nil, err
	}
	info := cons.CachedInfo()
	if info == nil {
		return nil, fmt.Errorf("consumer from %d: no consumer info", start)
	}
	r := &Reader{sub: s, consumer: cons, after: after, lastSeq: start - 1, created: st.info.Created,
		consumerName: info.Name}
	// JetStream starts a consumer at the stream's first message when the start was dropped
	// (its delivered sequence is then past start-1): the start may no longer be covered.
	if info.Delivered.Stream >= start {
		r.deleteConsumer()
		return nil, &staleStateError{ErrTooOld}
	}
	msgs, err := cons.Messages()
	if err != nil {
		r.deleteConsumer()
		return nil, fmt.Errorf("consume: %w", err)
	}
	r.msgs = msgs
	return r, nil
}

// withGapSubject adds GapSubject to filters unless one of them already matches it
// (JetStream refuses overlapping filters).
func withGapSubject(filters []string) []string {
	for _, f := range filters {
		if subjectMatches(f, GapSubject) {
			return filters
		}
	}
	return append(slices.Clone(filters), GapSubject)
}

// subjectMatches reports whether the NATS filter (with * and > wildcards) matches subject.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// checkCovered returns ErrTooOld if the stream was replaced or, when from is non-zero, it
// dropped messages at or after sequence from. Ordered consumers recreate themselves after a
// lost connection or a NATS restart from the next sequence, silently skipping what retention
// dropped meanwhile; this is how a reader notices.
func (r *Reader) checkCovered(ctx context.Context, from uint64, notBefore time.Time) error {
	st, err := r.sub.readState(ctx, notBefore)
	if err != nil {
		return fmt.Errorf("stream state: %w", err)
	}
	if !st.info.Created.Equal(r.created) {
		return ErrTooOld
	}
	if from > 0 && st.info.State.Msgs > 0 && st.info.State.FirstSeq > from {
		return ErrTooOld
	}
	return nil
}

// recheck runs the periodic identity check and any pending coverage check. A check that
// cannot run (NATS busy or away) stays pending and is retried with the next message or idle
// tick: events read meanwhile are not lost, and if a gap is found after all, the reader's
// owner relists, which corrects them.
//
// With no reset pending only the stream's identity is checked: a filtered reader's last
// sequence stays put while other subjects' messages go by and age out, which is no gap.
func (r *Reader) recheck(ctx context.Context) error {
	notBefore := time.Now().Add(-stateMaxAge)
	if r.checkFrom != 0 {
		notBefore = r.resetAt
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	err := r.checkCovered(ctx, r.checkFrom, notBefore)
	if errors.Is(err, ErrTooOld) {
		return err
	}
	if err == nil {
		r.checkFrom = 0
	}
	return nil
}

// Close stops the reader and deletes its consumer, which NATS would otherwise keep until it
// has been idle for consumerIdleTimeout.
func (r *Reader) Close() {
	if r.msgs != nil {
		r.msgs.Stop()
	}
	r.deleteConsumer()
}

func (r *Reader) deleteConsumer() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if info := r.consumer.CachedInfo(); info != nil {
		_ = r.sub.js.DeleteConsumer(ctx, StreamName, info.Name)
	}
}

// Run delivers events to handle until ctx is done (nil) or handle or the stream fails.
func (r *Reader) Run(ctx context.Context, handle func(Event) error) error {
	stop := context.AfterFunc(ctx, r.msgs.Stop)
	defer stop()
	idle := r.sub.idleCheck
	for {
		res, err := r.next(ctx, idle+rand.N(idle/2+1))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if res.timeout {
			if err := r.recheck(ctx); err != nil {
				return err
			}
			continue
		}
		if !res.has {
			continue
		}
		if err := handle(res.ev); err != nil {
			return err
		}
	}
}

// readResult is one step of a Reader: an event (has), a message it read but does not hand
// out (a gap marker, a change not newer than its start), or nothing within the wait.
type readResult struct {
	ev      Event
	has     bool
	timeout bool
	pending uint64 // messages left for the consumer after this one, as of its delivery
}

// next reads one message, waiting up to wait. The caller checks ctx before the error: a
// done ctx stops the consumer, which surfaces as an error.
func (r *Reader) next(ctx context.Context, wait time.Duration) (readResult, error) {
	m, err := r.msgs.Next(jetstream.NextMaxWait(wait))
	if ctx.Err() != nil {
		return readResult{}, ctx.Err()
	}
	if errors.Is(err, nats.ErrTimeout) {
		return readResult{timeout: true}, nil
	}
	if err != nil {
		return readResult{}, fmt.Errorf("next event: %w", err)
	}
	md, err := m.Metadata()
	if err != nil {
		return readResult{}, fmt.Errorf("message on %s: %w", m.Subject(), err)
	}
	if md.Consumer != r.consumerName {
		// The ordered consumer recreated itself (after a gap, a lost consumer or a NATS
		// restart) from the sequence after the last one delivered.
		r.consumerName = md.Consumer
		r.checkFrom, r.resetAt = r.lastSeq+1, time.Now()
	}
	if r.checkFrom != 0 {
		if err := r.recheck(ctx); err != nil {
			return readResult{}, err
		}
	}
	r.lastSeq = md.Sequence.Stream
	res := readResult{pending: md.NumPending}
	if isGapMarker(m.Subject(), m.Headers()) {
		return res, r.crossGap(m.Headers())
	}
	ev, err := r.sub.decode(m.Subject(), m.Headers(), m.Data())
	if err != nil {
		return readResult{}, err
	}
	ev.Sequence = md.Sequence.Stream
	r.lastRev = ev.Revision
	if ev.Revision <= r.after {
		return res, nil
	}
	res.ev, res.has = ev, true
	return res, nil
}

// crossGap returns ErrTooOld if the compaction gap marked by h lost changes the reader needs:
// its position (the revision it has everything up to) is below the gap's end.
func (r *Reader) crossGap(h nats.Header) error {
	g, ok := parseGap(0, h)
	if !ok {
		return fmt.Errorf("gap marker without revisions: %v", h)
	}
	if g.lost() && max(r.after, r.lastRev) < g.rev-1 {
		return ErrTooOld
	}
	return nil
}

func isGapMarker(subject string, h nats.Header) bool {
	return subject == GapSubject || h.Get(HeaderType) == string(Gap)
}

// gapMarker is a compaction gap marker: the changes with revisions in (prev, rev) are lost.
type gapMarker struct {
	seq       uint64
	rev, prev int64
}

func parseGap(seq uint64, h nats.Header) (gapMarker, bool) {
	rev, err1 := strconv.ParseInt(h.Get(HeaderRevision), 10, 64)
	prev, err2 := strconv.ParseInt(h.Get(HeaderPrevRevision), 10, 64)
	return gapMarker{seq: seq, rev: rev, prev: prev}, err1 == nil && err2 == nil
}

// lost reports whether the gap lost any change (a marker whose predecessor is C-1 lost none).
func (g gapMarker) lost() bool { return g.prev < g.rev-1 }

// decode turns a message into an Event; the message's id (Nats-Msg-Id) gives the event's
// position (a message without one is placed at its revision).
func (s *Subscription) decode(subject string, h nats.Header, data []byte) (Event, error) {
	rev, err := strconv.ParseInt(h.Get(HeaderRevision), 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("message on %s has no revision", subject)
	}
	kindHeader := h.Get(HeaderKind)
	i := strings.LastIndex(kindHeader, "/")
	if i < 0 {
		return Event{}, fmt.Errorf("message on %s has no kind", subject)
	}
	k, err := s.scheme.Lookup(kindHeader[:i], kindHeader[i+1:])
	if err != nil {
		return Event{}, err
	}
	ev := Event{Type: EventType(h.Get(HeaderType)), Kind: k, Revision: rev, pos: msgPosition(h, rev)}
	if h.Get(HeaderOversize) != "" {
		ev.Oversize = true
		ev.Object = k.New()
		md := scheme.Meta(ev.Object)
		md.Namespace, md.Name = h.Get(HeaderNamespace), h.Get(HeaderName)
		scheme.SetTypeMeta(ev.Object, k.APIVersion(), k.Kind)
		md.ResourceVersion = strconv.FormatInt(rev, 10)
		return ev, nil
	}
	cur := data
	if off := h.Get(HeaderPrevOffset); off != "" {
		n, err := strconv.Atoi(off)
		if err != nil || n < 0 || n > len(data) {
			return Event{}, fmt.Errorf("message on %s at revision %d: bad %s %q for %d bytes", subject, rev,
				HeaderPrevOffset, off, len(data))
		}
		cur = data[:n]
		if ev.PrevObject, err = decodeObject(k, data[n:], rev); err != nil {
			return Event{}, fmt.Errorf("previous value: %w", err)
		}
	}
	if ev.Object, err = decodeObject(k, cur, rev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

func decodeObject(k *scheme.Kind, data []byte, rev int64) (scheme.Object, error) {
	obj := k.New()
	if err := proto.Unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("decode %s at revision %d: %w", k.Kind, rev, err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	scheme.Meta(obj).ResourceVersion = strconv.FormatInt(rev, 10)
	return obj, nil
}

// streamState is a read of the stream's state: its info and its last gap marker.
type streamState struct {
	stream jetstream.Stream
	info   *jetstream.StreamInfo
	gap    *gapMarker // nil: the stream holds no gap marker
	began  time.Time  // the read began then: the state is at least that recent
}

// stateRead is a read of the stream's state in progress, which later callers join.
type stateRead struct {
	began time.Time
	done  chan struct{}
	state *streamState
	err   error
}

// readState returns a state of the stream read no earlier than notBefore: the newest one
// read, the one being read, or a new read. Concurrent callers share one read.
func (s *Subscription) readState(ctx context.Context, notBefore time.Time) (*streamState, error) {
	s.mu.Lock()
	if s.state != nil && !s.state.began.Before(notBefore) {
		st := s.state
		s.mu.Unlock()
		return st, nil
	}
	rd := s.reading
	if rd == nil || rd.began.Before(notBefore) {
		rd = &stateRead{began: time.Now(), done: make(chan struct{})}
		s.reading = rd
		s.mu.Unlock()
		// The read is shared: it must not end because its first caller went away.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptTimeout)
		rd.state, rd.err = s.fetchState(rctx, rd.began)
		cancel()
		s.mu.Lock()
		if rd.err == nil && (s.state == nil || s.state.began.Before(rd.began)) {
			s.state = rd.state
		}
		if s.reading == rd {
			s.reading = nil
		}
		s.mu.Unlock()
		close(rd.done)
	} else {
		s.mu.Unlock()
	}
	select {
	case <-rd.done:
		return rd.state, rd.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetchState reads the stream's state; the first read looks the stream up, which reads its
// info too.
func (s *Subscription) fetchState(ctx context.Context, began time.Time) (*streamState, error) {
	s.mu.Lock()
	stream := s.stream
	s.mu.Unlock()
	if stream == nil {
		stream, err := s.js.Stream(ctx, StreamName)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", StreamName, err)
		}
		s.mu.Lock()
		s.stream = stream
		s.mu.Unlock()
		return withLastGap(ctx, &streamState{stream: stream, info: stream.CachedInfo(), began: began})
	}
	return readStreamState(ctx, stream, began)
}

func readStreamState(ctx context.Context, stream jetstream.Stream, began time.Time) (*streamState, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	return withLastGap(ctx, &streamState{stream: stream, info: info, began: began})
}

// withLastGap adds the stream's last gap marker to st.
func withLastGap(ctx context.Context, st *streamState) (*streamState, error) {
	stream, info := st.stream, st.info
	if info.State.Msgs == 0 {
		return st, nil
	}
	m, err := stream.GetLastMsgForSubject(ctx, GapSubject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return nil, fmt.Errorf("last gap marker: %w", err)
	default:
		g, ok := parseGap(m.Sequence, m.Header)
		if !ok {
			return nil, fmt.Errorf("gap marker %d without revisions", m.Sequence)
		}
		st.gap = &g
	}
	return st, nil
}

// StartSequence finds the first stream sequence holding a change newer than revision after,
// or ErrTooOld if such changes have aged out or were lost to a compaction gap.
func StartSequence(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, after int64) (uint64, error) {
	st, err := readStreamState(ctx, stream, time.Now())
	if err != nil {
		return 0, err
	}
	return startSequence(ctx, js, stream, st, after)
}

// covers returns ErrTooOld unless the stream still holds every message after revision
// after: nothing aged out or was lost to a compaction gap since.
func covers(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, state *streamState, after int64) error {
	st := state.info.State
	if st.Msgs == 0 {
		if st.LastSeq == 0 {
			return nil // nothing was ever published: everything after `after` is still to come
		}
		marks, err := js.KeyValue(ctx, WatermarkBucket)
		if err != nil {
			return ErrTooOld
		}
		e, err := marks.Get(ctx, WatermarkKey)
		if err != nil {
			return ErrTooOld
		}
		if w, _ := strconv.ParseInt(string(e.Value()), 10, 64); after < w {
			return ErrTooOld
		}
		return nil
	}
	// A gap marker anywhere in the stream lost the changes before its end.
	if g := state.gap; g != nil && g.lost() && after < g.rev-1 {
		return ErrTooOld
	}
	first, err := stream.GetMsg(ctx, st.FirstSeq)
	if err != nil {
		return fmt.Errorf("read first message: %w", err)
	}
	// The first message names its predecessor: what came after it has aged out.
	prev, _ := strconv.ParseInt(first.Header.Get(HeaderPrevRevision), 10, 64)
	if isGapMarker(first.Subject, first.Header) {
		if g, ok := parseGap(first.Sequence, first.Header); ok {
			prev = max(prev, g.rev-1)
		}
	}
	if after < prev {
		return ErrTooOld
	}
	return nil
}

func startSequence(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, state *streamState, after int64) (uint64, error) {
	if err := covers(ctx, js, stream, state, after); err != nil {
		return 0, err
	}
	st := state.info.State
	if st.Msgs == 0 {
		return st.LastSeq + 1, nil // 1 when nothing was ever published
	}
	revisionAt := func(seq uint64) (int64, error) {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			return 0, fmt.Errorf("read message %d: %w", seq, err)
		}
		rev, _ := strconv.ParseInt(m.Header.Get(HeaderRevision), 10, 64)
		return rev, nil
	}
	// Most readers start from a fresh list: after the last message.
	last, err := revisionAt(st.LastSeq)
	if err != nil {
		return 0, err
	}
	if last <= after {
		return st.LastSeq + 1, nil
	}
	// Revisions grow with sequences: binary search for the first one newer than after.
	lo, hi := st.FirstSeq, st.LastSeq
	for lo < hi {
		mid := lo + (hi-lo)/2
		rev, err := revisionAt(mid)
		if err != nil {
			return 0, err
		}
		if rev > after {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// retry runs fn until it succeeds, fails for good, or ctx ends, giving each attempt
// attemptTimeout. JetStream answers slowly, not wrongly, when hundreds of readers open at
// once; what times out is tried again.
func retry[T any](ctx context.Context, what string, fn func(context.Context) (T, error)) (T, error) {
	delay := 20 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		v, err := fn(actx)
		cancel()
		if err == nil || errors.Is(err, ErrTooOld) {
			return v, err
		}
		if !transient(err) || ctx.Err() != nil {
			return v, fmt.Errorf("%s: %w", what, err)
		}
		t := time.NewTimer(delay/2 + rand.N(delay))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return v, fmt.Errorf("%s: %w", what, err)
		}
		delay = min(2*delay, time.Second)
	}
}

// transient reports whether a JetStream request failed only because NATS was slow or briefly
// without JetStream.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503)
}

// withDefaultTimeout bounds ctx by d unless it already ends sooner.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
