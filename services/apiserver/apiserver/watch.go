package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// watchRequest is a parsed watch.
type watchRequest struct {
	kind            *scheme.Kind
	namespace       string
	labelSelector   string
	fieldSelector   string
	resourceVersion string
}

// openWatch validates a watch and positions it, so that errors (a bad selector, a
// resourceVersion older than the bus keeps: 410) are answered before any event streams.
// With an empty resourceVersion the current state comes first, as ADDED events (Kubernetes'
// semantics); initial holds them.
func (s *Server) openWatch(ctx context.Context, w watchRequest) (reader *bus.Reader, initial []scheme.Object, filter *registry.Filter, err error) {
	if s.js == nil {
		return nil, nil, nil, apierrors.NewServiceUnavailable("watch needs the event bus; this apiserver runs without --nats-url")
	}
	if err := s.authorize(ctx, w.kind, "watch", "", w.namespace, ""); err != nil {
		return nil, nil, nil, err
	}
	filter, err = registry.NewFilter(w.kind, w.labelSelector, w.fieldSelector)
	if err != nil {
		return nil, nil, nil, err
	}
	var after int64
	switch w.resourceVersion {
	case "", "0":
		list, err := s.registry.List(ctx, w.kind, w.namespace, registry.ListOptions{
			LabelSelector: w.labelSelector, FieldSelector: w.fieldSelector})
		if err != nil {
			return nil, nil, nil, err
		}
		items, lm := scheme.ListItems(list)
		initial = items
		after, _ = strconv.ParseInt(lm.GetResourceVersion(), 10, 64)
	default:
		after, err = strconv.ParseInt(w.resourceVersion, 10, 64)
		if err != nil || after < 0 {
			return nil, nil, nil, apierrors.NewBadRequestField("resourceVersion",
				fmt.Sprintf("resourceVersion %q is not a revision", w.resourceVersion))
		}
	}
	reader, err = bus.NewSubscription(s.js, s.registry.Scheme()).Open(ctx, []string{bus.KindFilter(w.kind, w.namespace)}, after)
	if errors.Is(err, bus.ErrTooOld) {
		return nil, nil, nil, apierrors.NewGone(fmt.Sprintf("too old resource version: %d (the event bus no longer holds "+
			"changes after it; list again and watch from the list's resourceVersion)", after))
	}
	if err != nil {
		return nil, nil, nil, apierrors.NewServiceUnavailable(fmt.Sprintf("event bus: %v", err))
	}
	return reader, initial, filter, nil
}

// runWatch sends the initial objects, then every matching event, until ctx ends or send fails.
func runWatch(ctx context.Context, reader *bus.Reader, initial []scheme.Object, filter *registry.Filter,
	send func(typ string, obj scheme.Object) error) error {
	defer reader.Close()
	for _, obj := range initial {
		if err := send(string(bus.Added), obj); err != nil {
			return err
		}
	}
	return reader.Run(ctx, func(ev bus.Event) error {
		if !filter.Matches(ev.Object) {
			return nil
		}
		return send(string(ev.Type), ev.Object)
	})
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
			reader, initial, filter, err := s.openWatch(ctx, watchRequest{kind: k, namespace: r.namespace,
				labelSelector: r.list.LabelSelector, fieldSelector: r.list.FieldSelector, resourceVersion: rv})
			s.metrics.observe(k.Resource, "watch", "", statusCode(err), time.Since(start))
			if err != nil {
				return apierrors.FromError(err)
			}
			fields := out.Descriptor().Fields()
			typeField, objField := fields.ByName("type"), fields.ByName("object")
			return runWatch(ctx, reader, initial, filter, func(typ string, obj scheme.Object) error {
				ev := out.New()
				ev.Set(typeField, protoreflect.ValueOfString(typ))
				ev.Set(objField, protoreflect.ValueOfMessage(obj.ProtoReflect()))
				return stream.SendMsg(ev.Interface())
			})
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
	reader, initial, filter, err := s.openWatch(ctx, watchRequest{kind: k, namespace: ns,
		labelSelector: q.Get("labelSelector"), fieldSelector: q.Get("fieldSelector"),
		resourceVersion: q.Get("resourceVersion")})
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
	err = runWatch(ctx, reader, initial, filter, func(typ string, obj scheme.Object) error {
		body, err := codec.Marshal(obj)
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
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn("watch ended", "resource", k.Resource, "error", err)
	}
}
