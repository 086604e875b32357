// Package publisher is the event bus's writer: it runs in the apiserver, holds the one etcd
// watch in the system and turns every committed change into a JetStream message (see
// docs/event-bus.md). Readers use pkg/bus and never import this package.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
)

// maxBatchEvents bounds how many etcd changes one publish round takes.
const maxBatchEvents = 4096

// electionPrefix is where apiserver replicas elect the one publisher (outside /registry, so
// the election itself is not published).
const electionPrefix = "/skiff/elections/publisher"

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

// publisherMetrics show whether this replica leads and how far publishing has got.
type publisherMetrics struct {
	leader    prometheus.Gauge
	revision  prometheus.Gauge
	published prometheus.Counter
	batch     prometheus.Histogram
}

func newPublisherMetrics(reg prometheus.Registerer) *publisherMetrics {
	m := &publisherMetrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "skiff_bus_publisher_leader",
			Help: "1 while this apiserver is the elected publisher."}),
		revision: prometheus.NewGauge(prometheus.GaugeOpts{Name: "skiff_bus_published_revision",
			Help: "The etcd revision of the newest change acknowledged by the stream."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "skiff_bus_published_messages_total",
			Help: "Messages the stream acknowledged."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_bus_publish_batch_seconds",
			Help:    "Time to publish one etcd watch response and have the stream acknowledge it.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}}),
	}
	if reg != nil {
		reg.MustRegister(m.leader, m.revision, m.published, m.batch)
	}
	return m
}

// Publisher turns every committed change under the registry prefix into a stream message.
//
// Exactly once, in order: one replica at a time publishes (leader election on an etcd lease);
// each message carries Nats-Msg-Id = revision.index.copy and Nats-Expected-Last-Msg-Id = the
// previous message's id, so the stream refuses a duplicate, a gap or a second writer; after a
// crash or a change of leader the publisher reads the stream's last message and resumes the etcd
// watch at that revision, skipping what the stream already holds.
type Publisher struct {
	cfg    Config
	log    *slog.Logger
	js     jetstream.JetStream
	stream jetstream.Stream
	marks  jetstream.KeyValue
	m      *publisherMetrics
}

// New prepares the stream and the watermark bucket.
func New(ctx context.Context, cfg Config) (*Publisher, error) {
	js, err := jetstream.New(cfg.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
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
	return &Publisher{cfg: cfg, log: log.With("component", "publisher"), js: js, stream: stream, marks: marks,
		m: newPublisherMetrics(cfg.Metrics)}, nil
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
// lease, NATS or etcd errors, a refused publish) end the term; the loop campaigns again and
// resumes from what the stream holds.
func (p *Publisher) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := p.term(ctx)
		if ctx.Err() != nil {
			break
		}
		p.log.Warn("publisher term ended; resuming", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

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
	index     int
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

// outgoing is one message to publish.
type outgoing struct {
	msg       *nats.Msg
	rev       int64
	index     int
	copyIndex int
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
	last, err := p.lastPosition(ctx)
	if err != nil {
		return err
	}
	prevID, prevRev := last.msgID, last.rev
	var seq revisionCounter
	for {
		start := max(last.rev, 1) // a new stream starts with the oldest revision etcd keeps
		p.log.Info("publisher resuming", "fromRevision", start, "lastMsgID", prevID)
		watch := p.cfg.Etcd.Watch(clientv3.WithRequireLeader(ctx), p.cfg.Prefix+"/",
			clientv3.WithPrefix(), clientv3.WithRev(start), clientv3.WithPrevKV())
		compacted := int64(0)
		var marked time.Time // when the watermark was last written
		for resp := range watch {
			// etcd sends a response per revision; while behind, take every response already
			// waiting, so that one round of acknowledgements covers many changes.
			events, werr := resp.Events, resp.Err()
			caughtUp := false
		drain:
			for werr == nil && len(events) < maxBatchEvents {
				select {
				case more, ok := <-watch:
					if !ok {
						break drain
					}
					events, werr = append(events, more.Events...), more.Err()
					if werr != nil {
						resp = more
					}
				default:
					caughtUp = true
					break drain
				}
			}
			if len(events) > 0 {
				if prevID, prevRev, err = p.publishBatch(ctx, events, &seq, last, prevID, prevRev); err != nil {
					return err
				}
				// The watermark matters only once the whole stream has aged out. It is written
				// without waiting, when publishing has caught up and at least once a second
				// while behind; a write that fails is corrected by the next one.
				if caughtUp || time.Since(marked) > time.Second {
					p.markAsync(prevRev)
					marked = time.Now()
				}
			}
			if werr != nil {
				if errors.Is(werr, rpctypes.ErrCompacted) {
					compacted = resp.CompactRevision
					break
				}
				return fmt.Errorf("etcd watch: %w", werr)
			}
		}
		if compacted == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errors.New("etcd watch closed")
		}
		// What changed before the compaction revision is gone for good; the compaction
		// revision itself is still kept. Continue from it (skipping nothing there), and let
		// the next message name the revision before it as its predecessor: readers whose
		// start point is older then know to relist.
		p.log.Error("etcd compacted past the stream's position; older readers will relist",
			"streamRevision", last.rev, "compactRevision", compacted)
		last.rev, last.index, last.copyIndex = compacted, -1, -1
		prevRev = compacted - 1
	}
}

// markAsync records the watermark: a KV put, sent without waiting for its acknowledgement.
func (p *Publisher) markAsync(rev int64) {
	m := nats.NewMsg("$KV." + bus.WatermarkBucket + "." + bus.WatermarkKey)
	m.Data = []byte(strconv.FormatInt(rev, 10))
	if _, err := p.js.PublishMsgAsync(m); err != nil {
		p.log.Warn("watermark not written", "revision", rev, "error", err)
	}
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

// publishBatch publishes the messages of one watch response that the stream does not hold yet,
// and waits until the stream has acknowledged all of them.
func (p *Publisher) publishBatch(ctx context.Context, events []*clientv3.Event, seq *revisionCounter, last position, prevID string, prevRev int64) (string, int64, error) {
	start := time.Now()
	var futures []jetstream.PubAckFuture
	for _, ev := range events {
		for _, o := range p.messages(ev, seq.next(ev.Kv.ModRevision)) {
			if o.rev < last.rev || (o.rev == last.rev && (o.index < last.index ||
				(o.index == last.index && o.copyIndex <= last.copyIndex))) {
				continue // the stream holds it already
			}
			id := o.msg.Header.Get(jetstream.MsgIDHeader)
			o.msg.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(prevRev, 10))
			opts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
			if prevID != "" {
				opts = append(opts, jetstream.WithExpectLastMsgID(prevID))
			} else {
				opts = append(opts, jetstream.WithExpectLastSequence(last.seq))
			}
			f, err := p.js.PublishMsgAsync(o.msg, opts...)
			if err != nil {
				return "", 0, fmt.Errorf("publish %s: %w", id, err)
			}
			futures = append(futures, f)
			prevID, prevRev = id, o.rev
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return "", 0, fmt.Errorf("publish %s refused: %w", f.Msg().Header.Get(jetstream.MsgIDHeader), err)
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
	}
	if len(futures) > 0 {
		p.m.batch.Observe(time.Since(start).Seconds())
		p.m.published.Add(float64(len(futures)))
		p.m.revision.Set(float64(prevRev))
	}
	return prevID, prevRev, nil
}

// messages turns one etcd change into its stream messages: the object's subject, and for pods
// the subjects of the nodes it is bound to (or leaves).
func (p *Publisher) messages(ev *clientv3.Event, index int) []outgoing {
	kind, ns, name, ok := p.parseKey(string(ev.Kv.Key))
	if !ok {
		return nil
	}
	rev := ev.Kv.ModRevision
	typ, payload := bus.Modified, ev.Kv.Value
	switch {
	case ev.Type == mvccpb.DELETE:
		typ, payload = bus.Deleted, nil
		if ev.PrevKv != nil {
			payload = ev.PrevKv.Value
		}
	case ev.IsCreate():
		typ = bus.Added
	}
	out := []outgoing{p.message(bus.ObjectSubject(kind, ns, name), kind, typ, payload, rev, index, 0)}
	if kind.Kind != "Pod" {
		return out
	}
	oldNode, newNode := "", ""
	if ev.PrevKv != nil {
		oldNode = podNode(ev.PrevKv.Value)
	}
	if typ != bus.Deleted {
		newNode = podNode(ev.Kv.Value)
	}
	if oldNode != "" && oldNode != newNode {
		out = append(out, p.message(bus.NodeSubject(oldNode, kind, ns, name), kind, bus.Deleted, ev.PrevKv.Value, rev, index, len(out)))
	}
	if newNode != "" {
		nodeType := typ
		if oldNode != newNode {
			nodeType = bus.Added // the pod arrives on this node
		}
		out = append(out, p.message(bus.NodeSubject(newNode, kind, ns, name), kind, nodeType, payload, rev, index, len(out)))
	}
	return out
}

func (p *Publisher) message(subject string, k *scheme.Kind, typ bus.EventType, payload []byte, rev int64, index, copyIndex int) outgoing {
	m := nats.NewMsg(subject)
	m.Data = payload
	m.Header.Set(bus.HeaderType, string(typ))
	m.Header.Set(bus.HeaderRevision, strconv.FormatInt(rev, 10))
	m.Header.Set(bus.HeaderKind, k.APIVersion()+"/"+k.Kind)
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(rev, index, copyIndex))
	return outgoing{msg: m, rev: rev, index: index, copyIndex: copyIndex}
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

// podNode reads spec.nodeName from a stored pod.
//
// It reads just that field off the wire: the publisher looks at every pod change, old and new,
// and decoding whole pods for one string was most of its CPU.
func podNode(value []byte) string {
	spec := wireField(value, podSpecField)
	if spec == nil {
		return ""
	}
	return string(wireField(spec, podSpecNodeNameField))
}

// Field numbers of Pod.spec and PodSpec.node_name (proto/skiff/core/v1/types.proto); the test
// compares podNode with a full decode.
const (
	podSpecField         protowire.Number = 4
	podSpecNodeNameField protowire.Number = 6
)

// wireField returns the last length-delimited field num of an encoded message (the last one
// wins, as in decoding), or nil.
func wireField(b []byte, num protowire.Number) []byte {
	var found []byte
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return nil
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return nil
			}
			found, b = v, b[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return nil
		}
		b = b[l:]
	}
	return found
}
