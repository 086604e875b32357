// Package publisher is the event bus's writer: it runs in the apiserver, holds the one etcd
// watch in the system and turns every committed change into a JetStream message (see
// docs/event-bus.md). Readers use pkg/bus and never import this package.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/skiff-project/skiff/internal/limits"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
)

const (
	// maxRoundMessages bounds how many messages one publish round takes from the watch (a
	// round ends after the watch response that reaches it).
	maxRoundMessages = 2048
	// maxInFlight bounds the messages published and not yet acknowledged. While it is
	// reached the publisher stops taking changes from etcd until acknowledgements come back.
	maxInFlight = 8192
	// ackTimeout ends a term whose publish is neither acknowledged nor refused in this time
	// (a lost acknowledgement must not stall publishing forever).
	ackTimeout = 30 * time.Second
)

// electionPrefix is where apiserver replicas elect the one publisher (outside /registry, so
// the election itself is not published).
const electionPrefix = "/skiff/elections/publisher"

// Back-off between terms: every failed term campaigns again, which writes etcd revisions, so
// a publisher that keeps failing must not do so in a tight loop.
const (
	minTermBackoff = 200 * time.Millisecond
	maxTermBackoff = 5 * time.Second
	// A term that lasted this long was healthy: the next failure retries quickly again.
	healthyTerm = 30 * time.Second
)

// Config configures a Publisher.
type Config struct {
	Etcd     *clientv3.Client
	NATS     *nats.Conn
	Scheme   *scheme.Scheme
	Prefix   string // the registry's etcd prefix, e.g. "/registry"
	Stream   bus.StreamConfig
	Identity string // this replica's name in the election
	Logger   *slog.Logger
	// Metrics, if set, receives the publisher's series (skiff_bus_*).
	Metrics prometheus.Registerer
}

// publisherMetrics show whether this replica leads, how far publishing has got and how far
// behind etcd it is.
type publisherMetrics struct {
	leader    prometheus.Gauge
	revision  prometheus.Gauge
	published prometheus.Counter
	oversize  prometheus.Counter
	gaps      prometheus.Counter
	round     prometheus.Histogram
	terms     prometheus.Counter
}

func newPublisherMetrics(reg prometheus.Registerer, lag *lagState) *publisherMetrics {
	m := &publisherMetrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "skiff_bus_publisher_leader",
			Help: "1 while this apiserver is the elected publisher."}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{Name: "skiff_bus_published_revision",
			Help: "The etcd revision of the newest change acknowledged by the stream."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_bus_published_messages_total",
			Help: "Messages the stream acknowledged."}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_bus_oversize_messages_total",
			Help: "Changes published as an oversize marker without the object, because the bus's max payload could not carry them."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_bus_gap_markers_total",
			Help: "Compaction gap markers published: etcd compacted changes away before the publisher read them."}),
		round: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_bus_publish_batch_seconds",
			Help:    "Time from publishing one round of changes taken from the etcd watch to the stream's last acknowledgement of it.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}}),
		terms: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_bus_publisher_terms_ended_total",
			Help: "Publisher terms that ended in an error (each is followed by a new campaign after a back-off)."}),
	}
	if reg != nil {
		lagRevs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "skiff_bus_publisher_lag_revisions",
			Help: "etcd's revision as seen in the publisher's watch responses minus the revision the stream has acknowledged everything up to (0 when not leading)."},
			func() float64 { return float64(lag.revisions()) })
		lagSecs := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "skiff_bus_publisher_lag_seconds",
			Help: "Age of the oldest change received from etcd and not yet acknowledged by the stream (0 when none)."},
			func() float64 { return lag.seconds() })
		reg.MustRegister(m.leader, m.revision, m.published, m.oversize, m.gaps, m.round, m.terms, lagRevs, lagSecs)
	}
	return m
}

// lagState is how far the stream is behind etcd, written by the publishing loop and read by
// metric scrapes.
type lagState struct {
	etcdRevision atomic.Int64 // the newest revision seen in a watch response header
	covered      atomic.Int64 // the stream holds every change up to this revision
	oldest       atomic.Int64 // UnixNano when the oldest unacknowledged change was received; 0: none
}

func (l *lagState) revisions() int64 { return max(l.etcdRevision.Load()-l.covered.Load(), 0) }

func (l *lagState) seconds() float64 {
	t := l.oldest.Load()
	if t == 0 {
		return 0
	}
	return time.Since(time.Unix(0, t)).Seconds()
}

func (l *lagState) reset() {
	l.etcdRevision.Store(0)
	l.covered.Store(0)
	l.oldest.Store(0)
}

// Publisher turns every committed change under the registry prefix into a stream message.
//
// Exactly once, in order: one replica at a time publishes (leader election on an etcd lease);
// each message carries Nats-Msg-Id = revision.index.copy and Nats-Expected-Last-Msg-Id = the
// previous message's id, so the stream refuses a duplicate, a gap or a second writer; after a
// crash or a change of leader the publisher reads the stream's last message and resumes the etcd
// watch at that revision, skipping what the stream already holds.
type Publisher struct {
	cfg        Config
	log        *slog.Logger
	js         jetstream.JetStream
	stream     jetstream.Stream
	marks      jetstream.KeyValue
	m          *publisherMetrics
	lag        *lagState
	selections map[*scheme.Kind]*selection
	// warnedPayload is the server max payload last warned about, so that a publisher
	// campaigning again does not repeat the warning every term.
	warnedPayload int64
}

// New prepares the stream and the watermark bucket.
func New(ctx context.Context, cfg Config) (*Publisher, error) {
	js, err := jetstream.New(cfg.NATS,
		// Room for a full window of rounds plus watermark writes, so that publishing never
		// stalls in the client; the window (maxInFlight) is what bounds it.
		jetstream.WithPublishAsyncMaxPending(maxInFlight+maxRoundMessages+1024),
		jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	selections := map[*scheme.Kind]*selection{}
	for _, k := range cfg.Scheme.Kinds() {
		if selections[k], err = newSelection(k); err != nil {
			return nil, fmt.Errorf("publisher: %w", err)
		}
		selections[k].family = bus.KindFilter(k, "")
	}
	stream, err := bus.EnsureStream(ctx, js, cfg.Stream)
	if err != nil {
		return nil, err
	}
	marks, err := ensureWatermarks(ctx, js, cfg.Stream)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	lag := &lagState{}
	return &Publisher{cfg: cfg, log: log.With("component", "publisher"), js: js, stream: stream, marks: marks,
		m: newPublisherMetrics(cfg.Metrics, lag), lag: lag, selections: selections}, nil
}

func ensureWatermarks(ctx context.Context, js jetstream.JetStream, cfg bus.StreamConfig) (jetstream.KeyValue, error) {
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bus.WatermarkBucket, Description: "Skiff bus: revision the stream has reached",
		History: 1, Storage: storage, Replicas: max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("watermark bucket: %w", err)
	}
	return kv, nil
}

// Run campaigns for leadership and publishes while leader, until ctx is done. Failures (a lost
// lease, NATS or etcd errors, a refused publish) end the term; the loop campaigns again after
// a jittered, growing back-off and resumes from what the stream holds.
func (p *Publisher) Run(ctx context.Context) error {
	var b backoff
	for ctx.Err() == nil {
		began := time.Now()
		err := p.term(ctx)
		if ctx.Err() != nil {
			break
		}
		p.m.terms.Inc()
		if time.Since(began) >= healthyTerm {
			b.reset()
		}
		wait := b.next()
		p.log.Warn("publisher term ended; resuming", "error", err, "retryIn", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

// backoff doubles from minTermBackoff to maxTermBackoff, and waits a random time between half
// of that and all of it, so that replicas that failed together do not retry in lockstep.
type backoff struct{ cur time.Duration }

func (b *backoff) next() time.Duration {
	b.cur = min(max(2*b.cur, minTermBackoff), maxTermBackoff)
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// term is one leadership term: win the election, then publish until something fails.
func (p *Publisher) term(ctx context.Context) error {
	session, err := concurrency.NewSession(p.cfg.Etcd, concurrency.WithTTL(5), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	defer session.Close()
	election := concurrency.NewElection(session, electionPrefix)
	if err := election.Campaign(ctx, p.cfg.Identity); err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	p.log.Info("publisher elected", "identity", p.cfg.Identity)
	p.m.leader.Set(1)
	defer p.m.leader.Set(0)
	defer p.lag.reset()
	termCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-session.Done(): // the lease is gone: another replica may lead now
			cancel()
		case <-termCtx.Done():
		}
	}()
	defer func() {
		resignCtx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = election.Resign(resignCtx)
	}()
	return p.publish(termCtx)
}

// position is the last message the stream holds.
type position struct {
	rev       int64
	index     int // -1: a compaction gap marker
	copyIndex int
	msgID     string // "" when the stream holds no message
	seq       uint64 // the stream's last sequence
}

func (p *Publisher) lastPosition(ctx context.Context) (position, error) {
	info, err := p.stream.Info(ctx)
	if err != nil {
		return position{}, fmt.Errorf("stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		if info.State.LastSeq == 0 {
			return position{}, nil
		}
		seq := info.State.LastSeq
		// Everything aged out: the watermark says how far publishing got.
		e, err := p.marks.Get(ctx, bus.WatermarkKey)
		if err != nil {
			return position{}, fmt.Errorf("read watermark of an expired stream: %w", err)
		}
		rev, _ := strconv.ParseInt(string(e.Value()), 10, 64)
		return position{rev: rev, index: 1 << 30, seq: seq}, nil
	}
	m, err := p.stream.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return position{}, fmt.Errorf("read last message: %w", err)
	}
	id := m.Header.Get(jetstream.MsgIDHeader)
	rev, idx, cp, ok := bus.ParseMsgID(id)
	if !ok {
		return position{}, fmt.Errorf("last message %d has no Skiff message id (%q)", m.Sequence, id)
	}
	return position{rev: rev, index: idx, copyIndex: cp, msgID: id, seq: m.Sequence}, nil
}

// holds reports whether the stream, whose last message is at pos, already holds the message
// (rev, index, copyIndex).
func (pos position) holds(rev int64, index, copyIndex int) bool {
	return rev < pos.rev || (rev == pos.rev && (index < pos.index || (index == pos.index && copyIndex <= pos.copyIndex)))
}

// chain is the end of the expected-last-id chain: the last message published (not
// necessarily acknowledged yet).
type chain struct {
	prevID  string // "" before the first message of an empty stream
	prevRev int64  // the revision the next message names as its predecessor
	lastSeq uint64 // the stream's last sequence, expected by the first message of a new chain
}

// link sets the headers that put m on the chain after the previous message.
func (c *chain) link(m *nats.Msg) {
	m.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(c.prevRev, 10))
	if c.prevID != "" {
		m.Header.Set(jetstream.ExpectedLastMsgIDHeader, c.prevID)
	} else {
		m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(c.lastSeq, 10))
	}
}

func (p *Publisher) publish(ctx context.Context) error {
	// The stream may be gone since the last term (a memory stream does not survive a NATS
	// restart): make sure it exists. A new stream is refilled from etcd's history, and its new
	// creation time tells readers to relist.
	stream, err := bus.EnsureStream(ctx, p.js, p.cfg.Stream)
	if err != nil {
		return err
	}
	marks, err := ensureWatermarks(ctx, p.js, p.cfg.Stream)
	if err != nil {
		return err
	}
	p.stream, p.marks = stream, marks
	p.checkMaxPayload()
	last, err := p.lastPosition(ctx)
	if err != nil {
		return err
	}
	t := &termState{p: p, last: last, chain: chain{prevID: last.msgID, prevRev: last.rev, lastSeq: last.seq},
		acked: last.rev, marked: last.rev, families: map[string]string{}}
	if last.index == -1 {
		// The stream ends with a gap marker at the compaction revision C: what follows it
		// names C-1 as its predecessor, and the stream holds everything before C.
		t.chain.prevRev, t.acked, t.marked = last.rev-1, last.rev-1, last.rev-1
	}
	p.lag.covered.Store(t.acked)
	for {
		start := max(t.last.rev, 1) // a new stream starts with the oldest revision etcd keeps
		p.log.Info("publisher resuming", "fromRevision", start, "lastMsgID", t.chain.prevID)
		// Its own context key gives the watch its own gRPC stream, so that progress
		// requests reach this watch only.
		wctx := clientv3.WithRequireLeader(ctx)
		watch := p.cfg.Etcd.Watch(wctx, p.cfg.Prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(start), clientv3.WithPrevKV())
		compacted, err := t.follow(ctx, wctx, watch)
		if err != nil {
			return err
		}
		// What changed before the compaction revision is gone for good; the compaction
		// revision itself is still kept. Mark the lost span in the stream, then continue from
		// the compaction revision (skipping nothing there): readers whose position is older
		// then know to relist.
		p.log.Error("etcd compacted past the stream's position; older readers will relist",
			"streamRevision", t.chain.prevRev, "compactRevision", compacted)
		if err := t.sendGapMarker(compacted); err != nil {
			return err
		}
		t.last = position{rev: compacted, index: -1, copyIndex: -1}
	}
}

// checkMaxPayload warns when the NATS server cannot carry every object the API stores.
func (p *Publisher) checkMaxPayload() {
	mp := p.cfg.NATS.MaxPayload()
	if mp > 0 && mp < limits.BusMaxPayloadBytes && mp != p.warnedPayload {
		p.warnedPayload = mp
		p.log.Warn("the NATS server's max_payload is below what the bus needs; larger changes are published as oversize markers without the object, which readers then fetch from the API",
			"maxPayload", mp, "needed", limits.BusMaxPayloadBytes)
	}
}

// termState is the publishing loop's state within one term.
type termState struct {
	p     *Publisher
	last  position // the stream held this when the watch (re)started: skip up to it
	chain chain
	seq   revisionCounter
	// rounds are published rounds not yet fully acknowledged, oldest first, and inFlight
	// their unacknowledged messages.
	rounds   []*round
	inFlight int
	// acked is the revision the stream holds everything up to (as acknowledged), marked the
	// one last written to the watermark.
	acked, marked int64
	markedAt      time.Time
	// progressAt is when etcd was last asked for a progress notification.
	progressAt time.Time
	// families maps each family (bus.Live) to the id of its last message on the stream, for
	// the families whose last message this term knows.
	families map[string]string
}

// round is what one turn of the loop published: the changes taken from the watch at once.
type round struct {
	futures []jetstream.PubAckFuture
	acked   int
	// msgRev is the revision of its last message (for a gap marker at C: C-1); rev the
	// revision the stream holds every change up to once the round is acknowledged.
	msgRev, rev int64
	received    time.Time
	sent        time.Time
}

// follow publishes what the watch delivers until it fails. It returns the compaction revision
// when etcd compacted past the watch's start, or the error that ends the term.
//
// Several rounds are in flight at once: the chain of expected last ids keeps them in order on
// the stream, and a refused message makes the stream refuse every later one too, so the first
// refusal ends the term and the next resumes from the stream's last message.
func (t *termState) follow(ctx, wctx context.Context, watch clientv3.WatchChan) (int64, error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var watchCh clientv3.WatchChan
		if t.inFlight < maxInFlight {
			watchCh = watch
		}
		var okCh <-chan *jetstream.PubAck
		var errCh <-chan error
		if f := t.head(); f != nil {
			okCh, errCh = f.Ok(), f.Err()
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case resp, open := <-watchCh:
			if !open {
				if ctx.Err() != nil {
					return 0, ctx.Err()
				}
				return 0, errors.New("etcd watch closed")
			}
			compacted, err := t.take(resp, watch)
			if compacted != 0 || err != nil {
				return compacted, err
			}
		case <-okCh:
			t.ackHead()
			if err := t.collectAcks(); err != nil {
				return 0, err
			}
		case err := <-errCh:
			return 0, t.refused(t.head(), err)
		case <-tick.C:
			t.idle(wctx)
		}
		t.markWatermark()
	}
}

// take publishes resp and every watch response already waiting behind it, as one round.
func (t *termState) take(resp clientv3.WatchResponse, watch clientv3.WatchChan) (int64, error) {
	p := t.p
	r := &round{received: time.Now()}
	limit := p.payloadLimit()
	for {
		p.lag.etcdRevision.Store(max(p.lag.etcdRevision.Load(), resp.Header.Revision))
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				if err := t.send(r); err != nil {
					return 0, err
				}
				return resp.CompactRevision, nil
			}
			return 0, fmt.Errorf("etcd watch: %w", err)
		}
		if resp.IsProgressNotify() {
			// Every change up to the header's revision has been delivered: once what came
			// before is acknowledged, the stream holds everything up to it.
			r.rev = max(r.rev, resp.Header.Revision)
		}
		for _, ev := range resp.Events {
			for _, o := range p.messages(ev, t.seq.next(ev.Kv.ModRevision)) {
				if t.last.holds(o.rev, o.index, o.copyIndex) {
					// The stream holds it already; it is still its families' last so far.
					t.recordFamilies(o, o.msg.Header.Get(jetstream.MsgIDHeader))
					continue
				}
				f, err := t.publishOne(o, limit)
				if err != nil {
					return 0, err
				}
				r.futures = append(r.futures, f)
				r.msgRev = o.rev
			}
			r.rev = max(r.rev, ev.Kv.ModRevision)
		}
		if len(r.futures) >= maxRoundMessages || t.inFlight+len(r.futures) >= maxInFlight {
			break
		}
		select {
		case more, open := <-watch:
			if !open {
				return 0, t.send(r) // the loop notices the closed watch next
			}
			resp = more
			continue
		default:
		}
		break
	}
	return 0, t.send(r)
}

// send adds a published round to the window.
func (t *termState) send(r *round) error {
	if len(r.futures) == 0 && r.rev == 0 {
		return nil
	}
	r.sent = time.Now()
	if len(t.rounds) == 0 {
		t.p.lag.oldest.Store(r.received.UnixNano())
	}
	t.rounds = append(t.rounds, r)
	t.inFlight += len(r.futures)
	return t.collectAcks() // a round without messages (progress) may be complete already
}

// head is the oldest unacknowledged message, or nil. (collectAcks retires complete rounds, so
// the first round is incomplete.)
func (t *termState) head() jetstream.PubAckFuture {
	if len(t.rounds) == 0 {
		return nil
	}
	r := t.rounds[0]
	return r.futures[r.acked]
}

// ackHead counts the head's acknowledgement, which the caller has received.
func (t *termState) ackHead() {
	t.rounds[0].acked++
	t.inFlight--
	t.p.m.published.Inc()
}

// collectAcks takes every acknowledgement already received, in publish order, and retires
// the rounds that are complete.
func (t *termState) collectAcks() error {
	p := t.p
	for len(t.rounds) > 0 {
		r := t.rounds[0]
		for r.acked < len(r.futures) {
			f := r.futures[r.acked]
			select {
			case <-f.Ok():
				t.ackHead()
				continue
			case err := <-f.Err():
				return t.refused(f, err)
			default:
			}
			return nil
		}
		t.rounds[0] = nil
		t.rounds = t.rounds[1:]
		if len(r.futures) > 0 {
			p.m.round.Observe(time.Since(r.sent).Seconds())
			t.acked = max(t.acked, r.msgRev)
			p.m.revision.Set(float64(t.acked))
		}
		p.lag.covered.Store(max(p.lag.covered.Load(), r.rev, t.acked))
		if len(t.rounds) > 0 {
			p.lag.oldest.Store(t.rounds[0].received.UnixNano())
		} else {
			p.lag.oldest.Store(0)
		}
	}
	return nil
}

// refused ends the term: the stream refused f, and so every message after it.
func (t *termState) refused(f jetstream.PubAckFuture, err error) error {
	return fmt.Errorf("publish %s refused: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
}

// idle runs on a timer. When everything received is acknowledged but the lag still counts
// revisions (changes outside the registry prefix, or a watch catching up), it asks etcd,
// at most once a second, for a progress notification: etcd answers once the watch has
// delivered everything up to its current revision.
func (t *termState) idle(wctx context.Context) {
	if len(t.rounds) > 0 || t.p.lag.revisions() == 0 || time.Since(t.progressAt) < time.Second {
		return
	}
	t.progressAt = time.Now()
	ctx, cancel := context.WithTimeout(wctx, time.Second)
	defer cancel()
	if err := t.p.cfg.Etcd.RequestProgress(ctx); err != nil {
		t.p.log.Debug("etcd progress request failed", "error", err)
	}
}

// markWatermark records the revision the stream holds everything up to in the watermark
// bucket, without waiting: at most every 100 ms when nothing is in flight, and at least once a
// second while behind. It matters only once the whole stream has aged out; a write that fails
// is corrected by the next one.
func (t *termState) markWatermark() {
	since := time.Since(t.markedAt)
	if t.acked == t.marked || since < 100*time.Millisecond || (len(t.rounds) > 0 && since < time.Second) {
		return
	}
	m := nats.NewMsg("$KV." + bus.WatermarkBucket + "." + bus.WatermarkKey)
	m.Data = []byte(strconv.FormatInt(t.acked, 10))
	if _, err := t.p.js.PublishMsgAsync(m); err != nil {
		t.p.log.Warn("watermark not written", "revision", t.acked, "error", err)
		return
	}
	t.marked, t.markedAt = t.acked, time.Now()
}

// publishOne publishes o on the chain, as an oversize marker if the bus cannot carry it.
func (t *termState) publishOne(o outgoing, limit int64) (jetstream.PubAckFuture, error) {
	p := t.p
	t.chain.link(o.msg)
	t.linkFamilies(o)
	if size := msgSize(o.msg); limit > 0 && size > limit {
		o.msg = p.oversizeMarker(o, size, limit)
	}
	f, err := p.js.PublishMsgAsync(o.msg, stallWait())
	if errors.Is(err, nats.ErrMaxPayload) && o.msg.Header.Get(bus.HeaderOversize) == "" {
		// The server's limit changed under us (a reconnect to another server).
		o.msg = p.oversizeMarker(o, msgSize(o.msg), p.cfg.NATS.MaxPayload())
		f, err = p.js.PublishMsgAsync(o.msg, stallWait())
	}
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", o.msg.Header.Get(jetstream.MsgIDHeader), err)
	}
	t.chain.prevID, t.chain.prevRev = o.msg.Header.Get(jetstream.MsgIDHeader), o.rev
	t.recordFamilies(o, t.chain.prevID)
	return f, nil
}

// linkFamilies names, on o, the previous message of each of its families, where known.
// The stream's chain keeps messages in publish order, so a family's previous message on the
// stream is the one this term published (or skipped as held) last.
func (t *termState) linkFamilies(o outgoing) {
	if prev, ok := t.families[o.family]; ok {
		o.msg.Header.Set(bus.HeaderFamilyPrev, prev)
	}
	if o.nsFamily != "" {
		if prev, ok := t.families[o.nsFamily]; ok {
			o.msg.Header.Set(bus.HeaderNamespacePrev, prev)
		}
	}
}

// recordFamilies makes id the last message of o's families.
func (t *termState) recordFamilies(o outgoing, id string) {
	t.families[o.family] = id
	if o.nsFamily != "" {
		t.families[o.nsFamily] = id
	}
}

// sendGapMarker publishes the compaction gap marker for compaction revision c on the chain.
func (t *termState) sendGapMarker(c int64) error {
	m := nats.NewMsg(bus.GapSubject)
	m.Header.Set(bus.HeaderType, string(bus.Gap))
	m.Header.Set(bus.HeaderRevision, strconv.FormatInt(c, 10))
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(c, -1, 0))
	t.chain.link(m)
	f, err := t.p.js.PublishMsgAsync(m, stallWait())
	if err != nil {
		return fmt.Errorf("publish gap marker at %d: %w", c, err)
	}
	t.p.m.gaps.Inc()
	// Changes in the gap may have belonged to any family: the next message of each is
	// unlinked, so that live readers check the stream (and meet this marker there).
	clear(t.families)
	// What follows names c-1 as its predecessor; the stream holds everything before c.
	t.chain.prevID, t.chain.prevRev = bus.MsgID(c, -1, 0), c-1
	return t.send(&round{futures: []jetstream.PubAckFuture{f}, msgRev: c - 1, rev: c - 1, received: time.Now()})
}

// stallWait lets a publish wait for the client's pending acknowledgements to drop below its
// bound: only a single etcd response larger than the window (one huge transaction) gets there.
func stallWait() jetstream.PublishOpt { return jetstream.WithStallWait(ackTimeout) }

// payloadLimit is the largest message (payload and headers) the bus takes now.
func (p *Publisher) payloadLimit() int64 { return p.cfg.NATS.MaxPayload() }

// msgSize is a message's size as NATS counts it against max_payload: the payload and the
// encoded headers ("NATS/1.0\r\n", "Key: value\r\n" each, "\r\n").
func msgSize(m *nats.Msg) int64 {
	n := len(m.Data)
	if len(m.Header) > 0 {
		n += len("NATS/1.0\r\n") + len("\r\n")
		for k, vs := range m.Header {
			for _, v := range vs {
				n += len(k) + len(": ") + len(v) + len("\r\n")
			}
		}
	}
	return int64(n)
}

// revisionCounter numbers the changes of one revision 0, 1, 2, ... in watch order. A message
// id must not depend on how etcd happened to group changes into watch responses: after a
// restart the watch resumes at the start of a revision and must number its changes the same.
type revisionCounter struct {
	rev   int64
	count int
}

func (c *revisionCounter) next(rev int64) int {
	if rev != c.rev {
		c.rev, c.count = rev, 0
	}
	c.count++
	return c.count - 1
}

// parseKey reads {prefix}/{resource}/{namespace}/{name} or {prefix}/{resource}/{name}.
func (p *Publisher) parseKey(key string) (*scheme.Kind, string, string, bool) {
	rest, ok := strings.CutPrefix(key, p.cfg.Prefix+"/")
	if !ok {
		return nil, "", "", false
	}
	parts := strings.Split(rest, "/")
	k, err := p.cfg.Scheme.ForName(parts[0])
	if err != nil || parts[0] != k.Resource {
		return nil, "", "", false
	}
	switch {
	case k.Namespaced && len(parts) == 3:
		return k, parts[1], parts[2], true
	case !k.Namespaced && len(parts) == 2:
		return k, "", parts[1], true
	}
	return nil, "", "", false
}
