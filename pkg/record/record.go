// Package record writes Kubernetes Events: what a component did to an object and why
// ("Scheduled", "FailedScheduling", "Pulling", ...), the way `kubectl describe` shows them.
// Repeats are aggregated as client-go's recorder does: the same event about the same object
// from the same component bumps count and lastTimestamp on one Event instead of writing a
// new object each time.
//
// Recording never blocks the caller: events go through a buffer to a writer goroutine
// (Run); when the API cannot keep up, events are dropped and counted, never queued without
// bound.
package record

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

// Event types.
const (
	Normal  = "Normal"
	Warning = "Warning"
)

const (
	// bufferSize bounds events waiting to be written.
	bufferSize = 1000
	// aggregateSize bounds how many distinct events are remembered for aggregation.
	aggregateSize = 4096
	// aggregateWindow is how long a repeat is folded into the earlier Event (Kubernetes
	// keeps aggregating for 10 minutes).
	aggregateWindow = 10 * time.Minute
)

// Recorder records events for one component.
type Recorder struct {
	client    client.Interface
	source    *corev1.EventSource
	log       *slog.Logger
	now       func() time.Time
	pending   chan *corev1.Event
	dropped   atomic.Int64
	mu        sync.Mutex
	seen      map[string]*list.Element // aggregation key -> *seenEvent in order
	seenOrder *list.List
}

type seenEvent struct {
	key   string
	event *corev1.Event // as last written
}

// New returns a recorder writing through c as component (e.g. "default-scheduler") on host
// (may be empty). Call Run to write.
func New(c client.Interface, component, host string, log *slog.Logger) *Recorder {
	if log == nil {
		log = slog.Default()
	}
	return &Recorder{client: c, source: &corev1.EventSource{Component: component, Host: host},
		log: log.With("component", component), now: time.Now, pending: make(chan *corev1.Event, bufferSize),
		seen: map[string]*list.Element{}, seenOrder: list.New()}
}

// Event records an event about obj. eventType is Normal or Warning; reason is a short
// CamelCase word; message is for humans.
func (r *Recorder) Event(obj scheme.Object, eventType, reason, message string) {
	md := obj.GetMetadata()
	ns := md.GetNamespace()
	if ns == "" {
		ns = "default" // events about cluster-scoped objects (nodes) live in default, as in Kubernetes
	}
	now := r.timestamp()
	ev := &corev1.Event{
		ApiVersion: "v1", Kind: "Event",
		Metadata: &metav1.ObjectMeta{Namespace: ns},
		InvolvedObject: &metav1.ObjectReference{ApiVersion: obj.GetApiVersion(), Kind: obj.GetKind(),
			Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid(), ResourceVersion: md.GetResourceVersion()},
		Reason: reason, Message: message, Type: eventType, Source: r.source,
		FirstTimestamp: now, LastTimestamp: now, Count: 1, ReportingComponent: r.source.GetComponent(),
		ReportingInstance: r.source.GetHost(),
	}
	select {
	case r.pending <- ev:
	default:
		r.dropped.Add(1)
	}
}

// Eventf is Event with a formatted message.
func (r *Recorder) Eventf(obj scheme.Object, eventType, reason, format string, args ...any) {
	r.Event(obj, eventType, reason, fmt.Sprintf(format, args...))
}

// Dropped counts events dropped because the buffer was full.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// flushTimeout bounds how long Run keeps writing, once ctx ends, the events recorded before.
const flushTimeout = 2 * time.Second

// writeTimeout bounds one write. Writes do not end with Run's context, so that an event being
// written when the component stops is not cut off.
const writeTimeout = 10 * time.Second

// Run writes recorded events until ctx ends, then, for at most flushTimeout and until no
// event came for flushQuiet, the events recorded before and just after: a component that
// stops right after acting (a scheduler after a binding) still reports what it did.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			r.flush(ctx)
			return
		case ev := <-r.pending:
			r.writeLogged(ctx, ev)
		}
	}
}

// flushQuiet is how long the flush waits for more events once none are pending: the
// component's last actions (a binding in flight when it stopped) record theirs just after.
const flushQuiet = 100 * time.Millisecond

func (r *Recorder) flush(ctx context.Context) {
	deadline := time.NewTimer(flushTimeout)
	defer deadline.Stop()
	for {
		quiet := time.NewTimer(flushQuiet)
		select {
		case ev := <-r.pending:
			quiet.Stop()
			r.writeLogged(ctx, ev)
		case <-quiet.C:
			return
		case <-deadline.C:
			quiet.Stop()
			return
		}
	}
}

func (r *Recorder) writeLogged(ctx context.Context, ev *corev1.Event) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if err := r.write(wctx, ev); err != nil {
		r.log.Warn("event not written", "reason", ev.GetReason(),
			"object", ev.GetInvolvedObject().GetNamespace()+"/"+ev.GetInvolvedObject().GetName(), "error", err)
	}
}

func (r *Recorder) timestamp() string { return r.now().UTC().Format(time.RFC3339) }

// aggregationKey identifies repeats: same object, reason, type and message from this source.
func aggregationKey(ev *corev1.Event) string {
	o := ev.GetInvolvedObject()
	return o.GetKind() + "\x00" + o.GetNamespace() + "\x00" + o.GetName() + "\x00" + o.GetUid() + "\x00" +
		ev.GetType() + "\x00" + ev.GetReason() + "\x00" + ev.GetMessage()
}

// write creates the event, or folds it into the Event written for an earlier repeat.
func (r *Recorder) write(ctx context.Context, ev *corev1.Event) error {
	key := aggregationKey(ev)
	if prev := r.lookup(key); prev != nil && r.withinWindow(prev) {
		next := proto.Clone(prev).(*corev1.Event)
		next.Count++
		next.LastTimestamp = ev.GetLastTimestamp()
		updated, err := r.client.Update(ctx, next)
		switch {
		case err == nil:
			r.remember(key, updated.(*corev1.Event))
			return nil
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Deleted (events expire) or changed by someone else: start a new one.
			r.forget(key)
		default:
			return err
		}
	}
	ev.Metadata.Name = ev.GetInvolvedObject().GetName() + "." + strconv.FormatInt(r.now().UnixNano(), 16)
	created, err := r.client.Create(ctx, ev)
	if err != nil {
		return err
	}
	r.remember(key, created.(*corev1.Event))
	return nil
}

func (r *Recorder) withinWindow(ev *corev1.Event) bool {
	first, err := time.Parse(time.RFC3339, ev.GetFirstTimestamp())
	return err == nil && r.now().Sub(first) < aggregateWindow
}

func (r *Recorder) lookup(key string) *corev1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.seen[key]; ok {
		r.seenOrder.MoveToFront(e)
		return e.Value.(*seenEvent).event
	}
	return nil
}

func (r *Recorder) remember(key string, ev *corev1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.seen[key]; ok {
		e.Value.(*seenEvent).event = ev
		r.seenOrder.MoveToFront(e)
		return
	}
	r.seen[key] = r.seenOrder.PushFront(&seenEvent{key: key, event: ev})
	if r.seenOrder.Len() > aggregateSize {
		oldest := r.seenOrder.Back()
		r.seenOrder.Remove(oldest)
		delete(r.seen, oldest.Value.(*seenEvent).key)
	}
}

func (r *Recorder) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.seen[key]; ok {
		r.seenOrder.Remove(e)
		delete(r.seen, key)
	}
}
