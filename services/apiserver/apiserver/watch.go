package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// watchRequest is a parsed watch.
type watchRequest struct {
	kind                 *scheme.Kind
	namespace            string
	labelSelector        string
	fieldSelector        string
	resourceVersion      string
	resourceVersionMatch string
	// allowBookmarks asks for BOOKMARK events: periodically, and after the initial events.
	allowBookmarks bool
	// sendInitialEvents (client-go's watch-list): true sends the state as ADDED events, then a
	// BOOKMARK annotated k8s.io/initial-events-end; false sends none, whatever the version.
	sendInitialEvents *bool
}

// openedWatch is a watch positioned on the bus, with what it sends first.
type openedWatch struct {
	// filters are the bus subjects the watch reads, through the server's shared live feeds;
	// namespace, if set, is the one namespace of those subjects' objects it wants.
	filters   []string
	namespace string
	initial   []scheme.Object // the current state, sent as ADDED events first
	filter    *registry.Filter
	kind      *scheme.Kind
	// after is the revision the watch starts after: the resourceVersion of its first bookmark.
	after int64
	// bookmarks and initialEventsEnd say which BOOKMARK events to send.
	bookmarks        bool
	initialEventsEnd bool
}

// Bookmark types and annotations, as Kubernetes names them.
const (
	bookmarkEvent              = "BOOKMARK"
	initialEventsEndAnnotation = "k8s.io/initial-events-end"
)

// checkWatchOptions refuses what Kubernetes' ValidateListOptions refuses for a watch:
// sendInitialEvents needs allowWatchBookmarks and resourceVersionMatch=NotOlderThan, and
// resourceVersionMatch is only for sendInitialEvents.
func checkWatchOptions(w watchRequest) error {
	var causes []*metav1.StatusCause
	forbid := func(field, msg string) {
		causes = append(causes, &metav1.StatusCause{Reason: "FieldValueForbidden", Field: field, Message: "Forbidden: " + msg})
	}
	if w.sendInitialEvents != nil {
		if !w.allowBookmarks {
			forbid("allowWatchBookmarks", "allowWatchBookmarks must be set to true when sendInitialEvents is set")
		}
		if w.resourceVersionMatch != registry.MatchNotOlderThan {
			causes = append(causes, &metav1.StatusCause{Reason: "FieldValueNotSupported", Field: "resourceVersionMatch",
				Message: fmt.Sprintf("Unsupported value: %q: supported values: %q", w.resourceVersionMatch, registry.MatchNotOlderThan)})
		}
	} else if w.resourceVersionMatch != "" {
		forbid("resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
	}
	if len(causes) > 0 {
		return apierrors.NewInvalid("meta.k8s.io", "ListOptions", "", causes)
	}
	return nil
}

// tooLargeWait is how long a watch from a resourceVersion etcd has not reached yet waits for
// it before answering "Too large resource version", as Kubernetes' watch cache does.
const tooLargeWait = 3 * time.Second

// openWatch validates a watch and positions it, so that errors (a bad selector, a
// resourceVersion older than the bus keeps: 410, one from the future: 504) are answered before
// any event streams. With an empty resourceVersion the current state comes first, as ADDED
// events (Kubernetes' semantics).
func (s *Server) openWatch(ctx context.Context, w watchRequest) (*openedWatch, error) {
	if s.js == nil {
		return nil, apierrors.NewServiceUnavailable("watch needs the event bus; this apiserver runs without --nats-url")
	}
	if err := s.authorize(ctx, w.kind, "watch", "", w.namespace, ""); err != nil {
		return nil, err
	}
	filter, err := registry.NewFilter(w.kind, w.labelSelector, w.fieldSelector)
	if err != nil {
		return nil, err
	}
	if err := checkWatchOptions(w); err != nil {
		return nil, err
	}
	ow := &openedWatch{filter: filter, kind: w.kind, bookmarks: w.allowBookmarks}
	var after int64
	// Kubernetes' rules: without sendInitialEvents, "" and "0" start with the current state
	// and N starts after N; sendInitialEvents=true starts with the state at least as new as
	// N (any state for "" and "0"), and false never sends one.
	initial := w.resourceVersion == "" || w.resourceVersion == "0"
	if w.sendInitialEvents != nil {
		initial = *w.sendInitialEvents
		ow.initialEventsEnd = initial
	}
	switch {
	case initial:
		// The state at least as new as the resourceVersion asked for; with none, as new as
		// etcd's revision now (a consistent read); "0": any. Concurrent watches of the same
		// selection share one read of it (sharedLists).
		var need int64
		switch w.resourceVersion {
		case "0":
		case "":
			if need, err = s.registry.CurrentRevision(ctx); err != nil {
				return nil, err
			}
		default:
			if need, err = strconv.ParseInt(w.resourceVersion, 10, 64); err != nil || need < 0 {
				return nil, apierrors.NewBadRequestField("resourceVersion",
					fmt.Sprintf("resourceVersion %q is not a revision", w.resourceVersion))
			}
			if err := s.waitForRevision(ctx, need); err != nil {
				return nil, err
			}
		}
		key := strings.Join([]string{w.kind.Group, w.kind.Resource, w.namespace, w.labelSelector, w.fieldSelector}, "\x00")
		ow.initial, after, err = s.initialLists.get(ctx, key, need, func() ([]scheme.Object, int64, error) {
			list, err := s.registry.List(ctx, w.kind, w.namespace, registry.ListOptions{LabelSelector: w.labelSelector, FieldSelector: w.fieldSelector})
			if err != nil {
				return nil, 0, err
			}
			items, lm := scheme.ListItems(list)
			rev, _ := strconv.ParseInt(lm.GetResourceVersion(), 10, 64)
			return items, rev, nil
		})
		if err != nil {
			return nil, err
		}
	case w.resourceVersion == "" || w.resourceVersion == "0":
		if after, err = s.registry.CurrentRevision(ctx); err != nil {
			return nil, err
		}
	default:
		after, err = strconv.ParseInt(w.resourceVersion, 10, 64)
		if err != nil || after < 0 {
			return nil, apierrors.NewBadRequestField("resourceVersion",
				fmt.Sprintf("resourceVersion %q is not a revision", w.resourceVersion))
		}
		if err := s.waitForRevision(ctx, after); err != nil {
			return nil, err
		}
	}
	ow.after = after
	ow.filters = []string{bus.KindFilter(w.kind, w.namespace)}
	if node, ok := filter.BoundTo(); ok {
		// A kubelet's watch reads its node's subjects, not every pod change of the cluster,
		// as kube-apiserver's watch cache indexes spec.nodeName. The node's family spans
		// namespaces, so a namespaced watch checks the namespace itself.
		ow.filters, ow.namespace = []string{bus.NodeFilter(node)}, w.namespace
	}
	return ow, nil
}

// waitForRevision waits up to tooLargeWait for etcd to reach revision rev, and answers
// Kubernetes' "Too large resource version" (504, retry after 1 s) if it does not.
func (s *Server) waitForRevision(ctx context.Context, rev int64) error {
	deadline := time.Now().Add(tooLargeWait)
	for {
		cur, err := s.registry.CurrentRevision(ctx)
		if err != nil {
			return err
		}
		if cur >= rev {
			return nil
		}
		if !time.Now().Before(deadline) {
			return apierrors.NewTooLargeResourceVersion(rev, cur)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// clientGoneError wraps a failure to send an event: the client went away, nobody to tell.
type clientGoneError struct{ err error }

func (e *clientGoneError) Error() string { return "send watch event: " + e.err.Error() }
func (e *clientGoneError) Unwrap() error { return e.err }

// bookmarkInterval is how often a watch that allows bookmarks gets one: often enough that a
// client resuming after a dropped connection rarely has to relist (Kubernetes sends them
// about once a minute).
const bookmarkInterval = 30 * time.Second

// runWatch sends the initial objects (and, when asked, the bookmark that ends them), then
// every change the watch's selectors see, with periodic bookmarks when allowed, until ctx
// ends (nil) or the watch fails.
func (s *Server) runWatch(ctx context.Context, ow *openedWatch, send func(typ string, obj scheme.Object) error) error {
	var mu sync.Mutex // one event at a time: the bookmark ticker and the reader both send
	lastSeen := ow.after
	bookmark := func(end bool) error {
		obj := ow.kind.New()
		md := scheme.Meta(obj)
		md.ResourceVersion = strconv.FormatInt(lastSeen, 10)
		if end {
			md.Annotations = map[string]string{initialEventsEndAnnotation: "true"}
		}
		return send(bookmarkEvent, obj)
	}
	for _, obj := range ow.initial {
		if err := send(string(bus.Added), obj); err != nil {
			return &clientGoneError{err}
		}
	}
	if ow.initialEventsEnd {
		if err := bookmark(true); err != nil {
			return &clientGoneError{err}
		}
	}
	if ow.bookmarks {
		interval := s.bookmarkInterval
		if interval <= 0 {
			interval = bookmarkInterval
		}
		tickCtx, stopTicks := context.WithCancel(ctx)
		defer stopTicks()
		ticks := time.NewTicker(interval)
		defer ticks.Stop()
		go func() {
			for {
				select {
				case <-tickCtx.Done():
					return
				case <-ticks.C:
					mu.Lock()
					err := bookmark(false)
					mu.Unlock()
					if err != nil {
						return // the reader's next send notices the client is gone
					}
				}
			}
		}()
	}
	// Every watch of a kind (or of a kind in one namespace) reads one shared live feed: one
	// NATS subscription and one decode per change for all of them, not a JetStream consumer
	// each. Events are shared, so nothing below modifies them.
	return s.busLive.Run(ctx, ow.filters, ow.after, func(ev bus.Event) error {
		var typ string
		var obj scheme.Object
		if ow.namespace == "" || ev.Object.GetMetadata().GetNamespace() == ow.namespace {
			var err error
			if typ, obj, err = s.watchEvent(ctx, ow.filter, ev); err != nil {
				return err
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if obj != nil {
			if err := send(typ, obj); err != nil {
				return &clientGoneError{err}
			}
		}
		lastSeen = max(lastSeen, ev.Revision)
		return nil
	})
}

// watchEvent is what a watch with filter sends for a bus event (nothing when obj is nil).
// Like Kubernetes, a change that makes an object match the selectors is ADDED, one that makes
// it stop matching is DELETED (with the previous content at the event's resourceVersion).
func (s *Server) watchEvent(ctx context.Context, filter *registry.Filter, ev bus.Event) (typ string, obj scheme.Object, err error) {
	obj, prev := ev.Object, ev.PrevObject
	if ev.Oversize {
		if obj, prev, err = s.oversizeObjects(ctx, ev, !filter.Empty()); err != nil {
			return "", nil, err
		}
	}
	matches := filter.Matches(obj)
	switch ev.Type {
	case bus.Added, bus.Deleted:
		if matches {
			return string(ev.Type), obj, nil
		}
	case bus.Modified:
		// Without a previous value, its labels and selectable fields were the new ones.
		prevMatches := matches
		if prev != nil {
			prevMatches = filter.Matches(prev)
		}
		switch {
		case matches && prevMatches:
			return string(bus.Modified), obj, nil
		case matches:
			return string(bus.Added), obj, nil
		case prevMatches:
			return string(bus.Deleted), prev, nil
		}
	}
	return "", nil, nil
}

// oversizeObjects reads from etcd, at the event's revision, what an oversize marker could not
// carry: the object (for a delete, its last state, at the revision before) and, for a
// MODIFIED event when selectors need it, its previous value. Both get the event's
// resourceVersion.
func (s *Server) oversizeObjects(ctx context.Context, ev bus.Event, needPrev bool) (obj, prev scheme.Object, err error) {
	md := ev.Object.GetMetadata()
	at := func(rev int64) (scheme.Object, error) {
		o, err := s.registry.GetAtRevision(ctx, ev.Kind, md.GetNamespace(), md.GetName(), rev)
		if err != nil {
			return nil, fmt.Errorf("read %s %s/%s at revision %d for an oversize event: %w", ev.Kind.Kind,
				md.GetNamespace(), md.GetName(), rev, err)
		}
		scheme.Meta(o).ResourceVersion = strconv.FormatInt(ev.Revision, 10)
		return o, nil
	}
	if ev.Type == bus.Deleted {
		obj, err = at(ev.Revision - 1)
		return obj, nil, err
	}
	if obj, err = at(ev.Revision); err != nil {
		return nil, nil, err
	}
	if needPrev && ev.Type == bus.Modified {
		if prev, err = at(ev.Revision - 1); err != nil {
			return nil, nil, err
		}
	}
	return obj, prev, nil
}

// watchEndStatus is the Status that tells a watch's client why the watch stopped; nil when
// there is nobody to tell (the request ended, the client went away).
func watchEndStatus(ctx context.Context, err error) *apierrors.StatusError {
	var gone *clientGoneError
	if err == nil || ctx.Err() != nil || errors.As(err, &gone) {
		return nil
	}
	if errors.Is(err, bus.ErrTooOld) {
		return apierrors.NewGone("too old resource version: the event bus no longer holds the changes this " +
			"watch needs; list again and watch from the list's resourceVersion")
	}
	var st *apierrors.StatusError
	if errors.As(err, &st) {
		return st
	}
	return apierrors.NewServiceUnavailable(fmt.Sprintf("event bus: %v", err))
}

// watchStreamDesc is the gRPC Watch method of kind k's service.
func (s *Server) watchStreamDesc(k *scheme.Kind, md protoreflect.MethodDescriptor) (grpc.StreamDesc, error) {
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return grpc.StreamDesc{}, err
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return grpc.StreamDesc{}, err
	}
	return grpc.StreamDesc{
		StreamName:    string(md.Name()),
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			req := in.New().Interface()
			if err := stream.RecvMsg(req); err != nil {
				return err
			}
			r := parseRequest(k, req)
			rv := ""
			if fd := req.ProtoReflect().Descriptor().Fields().ByName("resource_version"); fd != nil {
				rv = req.ProtoReflect().Get(fd).String()
			}
			ctx, cancel := s.streamContext(stream.Context())
			defer cancel()
			start := time.Now()
			ow, err := s.openWatch(ctx, watchRequest{kind: k, namespace: r.namespace,
				labelSelector: r.list.LabelSelector, fieldSelector: r.list.FieldSelector, resourceVersion: rv,
				resourceVersionMatch: r.list.ResourceVersionMatch, allowBookmarks: r.allowBookmarks,
				sendInitialEvents: r.list.SendInitialEvents})
			s.metrics.observe(k.Resource, "watch", "", statusCode(err), time.Since(start))
			if err != nil {
				return apierrors.FromError(err)
			}
			fields := out.Descriptor().Fields()
			typeField, objField := fields.ByName("type"), fields.ByName("object")
			err = s.runWatch(ctx, ow, func(typ string, obj scheme.Object) error {
				ev := out.New()
				ev.Set(typeField, protoreflect.ValueOfString(typ))
				ev.Set(objField, protoreflect.ValueOfMessage(obj.ProtoReflect()))
				return stream.SendMsg(ev.Interface())
			})
			if st := watchEndStatus(ctx, err); st != nil {
				s.log.Warn("watch ended", "resource", k.Resource, "error", err)
				return st
			}
			return nil
		},
	}, nil
}

func statusCode(err error) int32 {
	if err == nil {
		return 200
	}
	return apierrors.FromError(err).Status.GetCode()
}

// streamContext ends with the request or when the server starts shutting down.
func (s *Server) streamContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.stopping, cancel)
	return ctx, func() { stop(); cancel() }
}

// isWatch reports whether a REST request asks for a watch (?watch=true or ?watch=1).
func isWatch(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	v := r.URL.Query().Get("watch")
	return v == "true" || v == "1"
}

// kindFromPath resolves a list path (/api/v1[/namespaces/NS]/RESOURCE or
// /apis/GROUP/VERSION[/namespaces/NS]/RESOURCE) to its kind and namespace.
func (s *Server) kindFromPath(path string) (*scheme.Kind, string, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var group, version string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		version, parts = parts[1], parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		group, version, parts = parts[1], parts[2], parts[3:]
	default:
		return nil, "", false
	}
	ns := ""
	if len(parts) == 3 && parts[0] == "namespaces" {
		ns, parts = parts[1], parts[2:]
	}
	if len(parts) != 1 {
		return nil, "", false
	}
	for _, k := range s.registry.Scheme().Kinds() {
		if k.Group == group && k.Version == version && k.Resource == parts[0] && (k.Namespaced || ns == "") {
			return k, ns, true
		}
	}
	return nil, "", false
}

// serveWatch streams newline-delimited {"type":...,"object":{...}} events, as Kubernetes does.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request) {
	k, ns, ok := s.kindFromPath(r.URL.Path)
	if !ok {
		writeStatus(w, apierrors.FromError(apierrors.NewBadRequest("watch is not supported on "+r.URL.Path)))
		return
	}
	q := r.URL.Query()
	ctx, cancel := s.streamContext(r.Context())
	defer cancel()
	if t := q.Get("timeoutSeconds"); t != "" {
		secs, err := strconv.Atoi(t)
		if err != nil || secs < 0 {
			writeStatus(w, apierrors.NewBadRequestField("timeoutSeconds", "timeoutSeconds must be a non-negative integer"))
			return
		}
		if secs > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(secs)*time.Second)
			defer cancel()
		}
	}
	start := time.Now()
	wr := watchRequest{kind: k, namespace: ns,
		labelSelector: q.Get("labelSelector"), fieldSelector: q.Get("fieldSelector"),
		resourceVersion: q.Get("resourceVersion"), resourceVersionMatch: q.Get("resourceVersionMatch"),
		allowBookmarks: q.Get("allowWatchBookmarks") == "true"}
	if v := q.Get("sendInitialEvents"); v != "" {
		b := v == "true"
		wr.sendInitialEvents = &b
	}
	tr := tableRequestFrom(r.Context())
	if tr != nil {
		wr.allowBookmarks = false // a Table watch (kubectl get -w) has no use for them
	}
	ow, err := s.openWatch(ctx, wr)
	s.metrics.observe(k.Resource, "watch", "", statusCode(err), time.Since(start))
	if err != nil {
		writeStatus(w, apierrors.FromError(err))
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	send := func(typ string, obj proto.Message) error {
		var body []byte
		var err error
		if tr != nil && typ != "ERROR" {
			var t *table
			if t, err = s.toTable(obj, tr); err == nil {
				body, err = json.Marshal(t)
			}
		} else if o, ok := obj.(scheme.Object); ok && typ != "ERROR" && typ != bookmarkEvent {
			body, err = s.watchEncodings.json(o) // shared events: one encoding for every watch
		} else {
			body, err = codec.Marshal(obj)
		}
		if err != nil {
			return err
		}
		line := make([]byte, 0, len(body)+32)
		line = append(line, `{"type":"`...)
		line = append(line, typ...)
		line = append(line, `","object":`...)
		line = append(append(line, body...), "}\n"...)
		if _, err := w.Write(line); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	err = s.runWatch(ctx, ow, func(typ string, obj scheme.Object) error { return send(typ, obj) })
	if st := watchEndStatus(ctx, err); st != nil {
		// Kubernetes ends a watch it cannot continue with an ERROR event carrying the Status.
		s.log.Warn("watch ended", "resource", k.Resource, "error", err)
		_ = send("ERROR", st.Status)
	}
}
