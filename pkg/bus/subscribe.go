package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Event is one change read from the bus.
type Event struct {
	Type     EventType
	Kind     *scheme.Kind
	Object   scheme.Object // its resourceVersion is Revision
	Revision int64
	Sequence uint64 // the stream sequence, for diagnostics
}

// Subscription reads events from the stream.
type Subscription struct {
	js     jetstream.JetStream
	scheme *scheme.Scheme
}

// NewSubscription reads the stream through js.
func NewSubscription(js jetstream.JetStream, s *scheme.Scheme) *Subscription {
	return &Subscription{js: js, scheme: s}
}

// Run calls handle, in stream order, for every event on filters whose revision is newer than
// after, until ctx is done (nil) or handle fails (its error). It returns ErrTooOld when events
// newer than after have aged out of the stream: the caller must list again.
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
	sub    *Subscription
	stream jetstream.Stream
	msgs   jetstream.MessagesContext
	after  int64
	// created identifies the stream: a stream recreated under the same name (a memory stream
	// after a NATS restart) starts its sequences over, so positions in the old one mean nothing.
	created time.Time
	// lastSeq is the stream sequence of the last message read (start-1 before the first).
	lastSeq uint64
	// checkFrom, when non-zero, is the first sequence a recreated consumer should have
	// delivered, while the coverage check of that reset has not succeeded yet.
	checkFrom uint64
	consumer  jetstream.Consumer
	js        jetstream.JetStream
}

// idleCheck is about how often a reader with nothing to read checks that its stream is still
// the one it started on (with jitter, so that thousands of idle readers do not ask at once).
const idleCheck = 15 * time.Second

// consumerIdleTimeout is how long NATS keeps the consumer of a reader that went away without
// deleting it (a crashed process).
const consumerIdleTimeout = 30 * time.Second

// Open checks that the stream still covers everything after revision after (ErrTooOld if
// not) and positions a reader there. Opening first lets a server refuse a stale start with a
// status before it starts streaming.
//
// Delivery rides an ordered consumer, which notices its own gaps and recreates itself from
// the last sequence it delivered, also across NATS restarts.
func (s *Subscription) Open(ctx context.Context, filters []string, after int64) (*Reader, error) {
	stream, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamName, err)
	}
	start, err := StartSequence(ctx, s.js, stream, after)
	if err != nil {
		return nil, err
	}
	cons, err := s.js.OrderedConsumer(ctx, StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: consumerIdleTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer from %d: %w", start, err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	r := &Reader{sub: s, stream: stream, msgs: msgs, after: after, lastSeq: start - 1,
		created: stream.CachedInfo().Created, consumer: cons, js: s.js}
	// The stream may have dropped old messages between finding the start and creating the
	// consumer; then the start is no longer covered.
	if err := r.checkCovered(ctx, start); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// checkCovered returns ErrTooOld if messages after the last one read may have been dropped
// unread, or the stream was replaced. Ordered consumers recreate themselves after a lost
// connection or a NATS restart from the next sequence, silently skipping what retention
// dropped meanwhile; this is how a reader notices.
func (r *Reader) checkCovered(ctx context.Context, from uint64) error {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream info: %w", err)
	}
	if !info.Created.Equal(r.created) {
		return ErrTooOld
	}
	if info.State.Msgs > 0 && info.State.FirstSeq > from {
		return ErrTooOld
	}
	return nil
}

// recheck runs a pending coverage check. A check that cannot run (NATS busy or away) stays
// pending and is retried with the next message or idle tick: events read meanwhile are not
// lost, and if a gap is found after all, the reader's owner relists, which corrects them.
//
// With no reset pending only the stream's identity is checked: a filtered reader's last
// sequence stays put while other subjects' messages go by and age out, which is no gap.
func (r *Reader) recheck(ctx context.Context) error {
	from := r.checkFrom
	if from == 0 {
		from = 1
	}
	err := r.checkCovered(ctx, from)
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
	r.msgs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if info := r.consumer.CachedInfo(); info != nil {
		_ = r.js.DeleteConsumer(ctx, StreamName, info.Name)
	}
}

// Run delivers events to handle until ctx is done (nil) or handle or the stream fails.
func (r *Reader) Run(ctx context.Context, handle func(Event) error) error {
	stop := context.AfterFunc(ctx, r.msgs.Stop)
	defer stop()
	for {
		m, err := r.msgs.Next(jetstream.NextMaxWait(idleCheck + rand.N(idleCheck/2)))
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, nats.ErrTimeout) {
			if err := r.recheck(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("next event: %w", err)
		}
		ev, err := r.sub.decode(m)
		if err != nil {
			return err
		}
		if md, err := m.Metadata(); err == nil {
			// Consumer sequence 1 is a new consumer: the first, or one recreated after a reset.
			if md.Sequence.Consumer == 1 {
				r.checkFrom = r.lastSeq + 1
			}
			if r.checkFrom != 0 {
				if err := r.recheck(ctx); err != nil {
					return err
				}
			}
			r.lastSeq = md.Sequence.Stream
		}
		if ev.Revision <= r.after {
			continue
		}
		if err := handle(ev); err != nil {
			return err
		}
	}
}

func (s *Subscription) decode(m jetstream.Msg) (Event, error) {
	h := m.Headers()
	rev, err := strconv.ParseInt(h.Get(HeaderRevision), 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("message on %s has no revision", m.Subject())
	}
	kindHeader := h.Get(HeaderKind)
	i := strings.LastIndex(kindHeader, "/")
	if i < 0 {
		return Event{}, fmt.Errorf("message on %s has no kind", m.Subject())
	}
	k, err := s.scheme.Lookup(kindHeader[:i], kindHeader[i+1:])
	if err != nil {
		return Event{}, err
	}
	obj := k.New()
	if err := proto.Unmarshal(m.Data(), obj); err != nil {
		return Event{}, fmt.Errorf("decode %s at revision %d: %w", k.Kind, rev, err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	scheme.Meta(obj).ResourceVersion = strconv.FormatInt(rev, 10)
	ev := Event{Type: EventType(h.Get(HeaderType)), Kind: k, Object: obj, Revision: rev}
	if md, err := m.Metadata(); err == nil {
		ev.Sequence = md.Sequence.Stream
	}
	return ev, nil
}

// StartSequence finds the first stream sequence holding a change newer than revision after,
// or ErrTooOld if such changes have aged out.
func StartSequence(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, after int64) (uint64, error) {
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	st := info.State
	if st.Msgs == 0 {
		if st.LastSeq == 0 {
			return 1, nil // nothing was ever published: everything after `after` is still to come
		}
		marks, err := js.KeyValue(ctx, WatermarkBucket)
		if err != nil {
			return 0, ErrTooOld
		}
		e, err := marks.Get(ctx, WatermarkKey)
		if err != nil {
			return 0, ErrTooOld
		}
		if w, _ := strconv.ParseInt(string(e.Value()), 10, 64); after < w {
			return 0, ErrTooOld
		}
		return st.LastSeq + 1, nil
	}
	first, err := stream.GetMsg(ctx, st.FirstSeq)
	if err != nil {
		return 0, fmt.Errorf("read first message: %w", err)
	}
	if prev, _ := strconv.ParseInt(first.Header.Get(HeaderPrevRevision), 10, 64); after < prev {
		return 0, ErrTooOld
	}
	// Revisions grow with sequences: binary search for the first one newer than after.
	lo, hi := st.FirstSeq, st.LastSeq+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := stream.GetMsg(ctx, mid)
		if err != nil {
			return 0, fmt.Errorf("read message %d: %w", mid, err)
		}
		rev, _ := strconv.ParseInt(m.Header.Get(HeaderRevision), 10, 64)
		if rev > after {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}
