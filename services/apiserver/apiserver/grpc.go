package apiserver

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/authz"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// httpCodeHeader carries a non-200 success code (201 Created) from a gRPC handler to the REST
// gateway.
const httpCodeHeader = "x-skiff-http-code"

// request is what every per-kind request message carries, read by field name so that one
// handler serves every kind's typed service. Fields that several verbs share a name for
// (resource_version: a get's or a list's version, a delete's precondition) are kept as they
// come; serve gives them their meaning per verb.
type request struct {
	namespace       string
	name            string
	object          scheme.Object
	binding         *corev1.Binding
	list            registry.ListOptions
	timeoutSeconds  *int64
	resourceVersion string
	dryRun          []string
	fieldManager    string
	del             registry.DeleteOptions // the query parameters of a delete
	deleteBody      *metav1.DeleteOptions
	allowBookmarks  bool
}

func parseRequest(k *scheme.Kind, m proto.Message) request {
	var req request
	r := m.ProtoReflect()
	objName := k.MessageName()
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == objName:
			req.object = v.Message().Interface().(scheme.Object)
		case fd.Kind() == protoreflect.MessageKind && fd.Name() == "binding":
			req.binding, _ = v.Message().Interface().(*corev1.Binding)
		case fd.Kind() == protoreflect.MessageKind && fd.Name() == "body":
			req.deleteBody, _ = v.Message().Interface().(*metav1.DeleteOptions)
		case fd.Name() == "namespace" && fd.Kind() == protoreflect.StringKind:
			req.namespace = v.String()
		case fd.Name() == "name":
			req.name = v.String()
		case fd.Name() == "label_selector":
			req.list.LabelSelector = v.String()
		case fd.Name() == "field_selector":
			req.list.FieldSelector = v.String()
		case fd.Name() == "limit":
			req.list.Limit = v.Int()
		case fd.Name() == "continue":
			req.list.Continue = v.String()
		case fd.Name() == "resource_version_match":
			req.list.ResourceVersionMatch = v.String()
		case fd.Name() == "allow_watch_bookmarks":
			req.allowBookmarks = v.Bool()
		case fd.Name() == "send_initial_events":
			b := v.Bool()
			req.list.SendInitialEvents = &b
		case fd.Name() == "timeout_seconds":
			t := v.Int()
			req.timeoutSeconds = &t
		case fd.Name() == "grace_period_seconds":
			g := v.Int()
			req.del.GracePeriodSeconds = &g
		case fd.Name() == "propagation_policy":
			req.del.PropagationPolicy = v.String()
		case fd.Name() == "orphan_dependents":
			b := v.Bool()
			req.del.OrphanDependents = &b
		case fd.Name() == "resource_version":
			req.resourceVersion = v.String()
		case fd.Name() == "dry_run" && fd.IsList():
			for i, l := 0, v.List(); i < l.Len(); i++ {
				req.dryRun = append(req.dryRun, l.Get(i).String())
			}
		case fd.Name() == "field_manager":
			req.fieldManager = v.String()
		}
		return true
	})
	return req
}

// writeOptions reads the options of a create, update or bind.
func (req *request) writeOptions(optionsKind string) (registry.WriteOptions, error) {
	dry, err := registry.ParseDryRun(optionsKind, req.dryRun)
	if err != nil {
		return registry.WriteOptions{}, err
	}
	return registry.WriteOptions{DryRun: dry, FieldManager: req.fieldManager}, nil
}

// deleteOptions combines a delete's parameters with its DeleteOptions body. Over gRPC the
// request's resource_version is a precondition, as a body's preconditions are.
func (req *request) deleteOptions() (registry.DeleteOptions, error) {
	query := req.del
	query.Preconditions.ResourceVersion = req.resourceVersion
	return registry.DeleteOptionsFrom(query, req.dryRun, req.deleteBody)
}

// verbOf maps a proto method name to Kubernetes' verb and subresource (for authorization and
// metrics).
func verbOf(method string) (verb, sub string, ok bool) {
	switch method {
	case "Create":
		return "create", "", true
	case "Get":
		return "get", "", true
	case "List":
		return "list", "", true
	case "Update":
		return "update", "", true
	case "UpdateStatus":
		return "update", "status", true
	case "Delete":
		return "delete", "", true
	case "Bind":
		return "create", "binding", true
	}
	return "", "", false
}

// serviceDesc builds the gRPC service of kind k from its proto descriptor, with every method
// served by the generic registry.
func (s *Server) serviceDesc(k *scheme.Kind) (*grpc.ServiceDesc, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(k.ServiceName()))
	if err != nil {
		return nil, fmt.Errorf("service of %s: %w", k.Kind, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", k.ServiceName())
	}
	desc := &grpc.ServiceDesc{
		ServiceName: k.ServiceName(),
		HandlerType: (*any)(nil),
		Metadata:    sd.ParentFile().Path(),
	}
	methods := sd.Methods()
	for i := 0; i < methods.Len(); i++ {
		md := methods.Get(i)
		if md.IsStreamingServer() && md.Name() == "Watch" {
			sd, err := s.watchStreamDesc(k, md)
			if err != nil {
				return nil, fmt.Errorf("watch of %s: %w", k.Kind, err)
			}
			desc.Streams = append(desc.Streams, sd)
			continue
		}
		in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			return nil, fmt.Errorf("input of %s: %w", md.FullName(), err)
		}
		fullMethod := "/" + k.ServiceName() + "/" + string(md.Name())
		verb, sub, ok := verbOf(string(md.Name()))
		if !ok {
			return nil, fmt.Errorf("method %s has no handler", md.FullName())
		}
		desc.Methods = append(desc.Methods, grpc.MethodDesc{
			MethodName: string(md.Name()),
			Handler:    s.unaryHandler(k, string(md.Name()), verb, sub, in, fullMethod),
		})
	}
	return desc, nil
}

func (s *Server) unaryHandler(k *scheme.Kind, method, verb, sub string, in protoreflect.MessageType, fullMethod string) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	call := func(ctx context.Context, m any) (any, error) {
		return s.handle(ctx, k, method, verb, sub, m.(proto.Message))
	}
	s.inproc[fullMethod] = func(ctx context.Context, m proto.Message) (proto.Message, error) {
		return s.handle(ctx, k, method, verb, sub, m)
	}
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		m := in.New().Interface()
		if err := dec(m); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return call(ctx, m)
		}
		return interceptor(ctx, m, &grpc.UnaryServerInfo{Server: srv, FullMethod: fullMethod}, call)
	}
}

// handle serves one unary request, over gRPC or in process (from the REST gateway), and
// accounts for it in the metrics.
func (s *Server) handle(ctx context.Context, k *scheme.Kind, method, verb, sub string, m proto.Message) (proto.Message, error) {
	start := time.Now()
	resp, err := s.serve(ctx, k, method, verb, sub, m)
	se := apierrors.FromError(err)
	code := int32(200)
	if se != nil {
		code = se.Status.GetCode()
	} else if method == "Create" || method == "Bind" {
		code = 201
	}
	s.metrics.observe(k.Resource, verb, sub, code, time.Since(start))
	if se != nil {
		// A read at a version etcd has not reached yet is the client's timing, not a failure.
		if code >= 500 && !apierrors.IsTooLargeResourceVersion(se) {
			s.log.Error("request failed", "resource", k.Resource, "verb", verb, "error", se.Status.GetMessage())
		}
		return nil, se
	}
	return resp, nil
}

func (s *Server) serve(ctx context.Context, k *scheme.Kind, method, verb, sub string, m proto.Message) (proto.Message, error) {
	req := parseRequest(k, m)
	if req.name == "" && req.object != nil && (method == "Create") {
		req.name = req.object.GetMetadata().GetName()
	}
	if k.Namespaced && req.namespace == "" && method != "List" {
		return nil, apierrors.NewBadRequestField("metadata.namespace", "a namespace is required for "+k.Resource)
	}
	if err := s.authorize(ctx, k, verb, sub, req.namespace, req.name); err != nil {
		return nil, err
	}
	req.fieldManager = fieldManager(ctx, req.fieldManager, "")
	switch method {
	case "Create", "Update", "UpdateStatus", "Bind":
		optionsKind := registry.CreateOptionsKind
		if method == "Update" || method == "UpdateStatus" {
			optionsKind = registry.UpdateOptionsKind
		}
		opts, err := req.writeOptions(optionsKind)
		if err != nil {
			return nil, err
		}
		switch method {
		case "Create":
			obj, err := s.registry.Create(ctx, k, req.namespace, req.object, opts)
			if err == nil {
				setCreated(ctx)
			}
			return obj, err
		case "Update":
			return s.registry.Update(ctx, k, req.namespace, req.name, req.object, opts)
		case "UpdateStatus":
			return s.registry.UpdateStatus(ctx, k, req.namespace, req.name, req.object, opts)
		}
		if err := s.registry.Bind(ctx, req.namespace, req.name, req.binding, opts); err != nil {
			return nil, err
		}
		setCreated(ctx)
		return &metav1.Status{ApiVersion: "v1", Kind: "Status", Status: "Success", Code: 201}, nil
	case "Get":
		return s.registry.Get(ctx, k, req.namespace, req.name, registry.GetOptions{ResourceVersion: req.resourceVersion})
	case "List":
		opts := req.list
		opts.ResourceVersion = req.resourceVersion
		if t := req.timeoutSeconds; t != nil && *t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(*t)*time.Second)
			defer cancel()
		}
		return s.serveList(ctx, k, req.namespace, opts)
	case "Delete":
		opts, err := req.deleteOptions()
		if err != nil {
			return nil, err
		}
		return s.registry.Delete(ctx, k, req.namespace, req.name, opts)
	}
	return nil, apierrors.NewMethodNotSupported(k.Group, k.Resource, method)
}

func (s *Server) authorize(ctx context.Context, k *scheme.Kind, verb, sub, ns, name string) error {
	u := authz.UserFrom(ctx)
	d, reason, err := s.authorizer.Authorize(ctx, authz.Attributes{User: u, Verb: verb, APIGroup: k.Group,
		Resource: k.Resource, SubResource: sub, Namespace: ns, Name: name})
	if err != nil {
		return apierrors.NewInternal(fmt.Errorf("authorize: %w", err))
	}
	if d == authz.Allow {
		return nil
	}
	msg := fmt.Sprintf("User %q cannot %s resource %q", u.Name, verb, k.GroupResource())
	if sub != "" {
		msg += " subresource " + strconv.Quote(sub)
	}
	if ns != "" {
		msg += fmt.Sprintf(" in the namespace %q", ns)
	}
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(k.Group, k.Resource, name, msg)
}
