package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

const maxMessageBytes = 256 << 20

// flowWindowBytes is the HTTP/2 flow-control window: large lists arrive without waiting on
// window updates (gRPC's default is 64 KiB).
const flowWindowBytes = 16 << 20

// grpcClient calls the typed per-kind services (skiff.core.v1.PodAPI/Create, ...) with request
// messages built by name, so one implementation serves every kind.
type grpcClient struct {
	conn   *grpc.ClientConn
	scheme *scheme.Scheme
}

// NewGRPC returns a client of the gRPC API at target (host:port).
func NewGRPC(target string, opts ...grpc.DialOption) (Interface, error) {
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(flowWindowBytes), grpc.WithInitialConnWindowSize(flowWindowBytes),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)),
	}, opts...)
	if addrs := strings.Split(target, ","); len(addrs) > 1 {
		// Several apiservers: one connection that fails over between them (pick_first tries
		// them in order and moves on when one goes away).
		r := manual.NewBuilderWithScheme("skiff-apiservers")
		var state resolver.State
		for _, a := range addrs {
			state.Addresses = append(state.Addresses, resolver.Address{Addr: strings.TrimSpace(a)})
		}
		r.InitialState(state)
		opts = append(opts, grpc.WithResolvers(r))
		target = r.Scheme() + ":///apiservers"
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", target, err)
	}
	return &grpcClient{conn: conn, scheme: scheme.Default()}, nil
}

// NewGRPCFromConn wraps an existing connection; Close closes it.
func NewGRPCFromConn(conn *grpc.ClientConn) Interface {
	return &grpcClient{conn: conn, scheme: scheme.Default()}
}

func (c *grpcClient) Scheme() *scheme.Scheme { return c.scheme }
func (c *grpcClient) Close() error           { return c.conn.Close() }

// call invokes method of k's service with a request whose fields are set from fields (by
// proto field name; the object goes into the field of the kind's type).
func (c *grpcClient) call(ctx context.Context, k *scheme.Kind, method, requestPrefix string, obj scheme.Object, fields map[protoreflect.Name]any, out proto.Message) error {
	reqName := protoreflect.FullName(k.ProtoPackage() + "." + requestPrefix + k.Kind + "Request")
	if requestPrefix == "Bind" {
		reqName = protoreflect.FullName(k.ProtoPackage() + ".CreateBindingRequest")
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(reqName)
	if err != nil {
		return fmt.Errorf("request type %s: %w", reqName, err)
	}
	req := mt.New()
	fds := req.Descriptor().Fields()
	objType := k.MessageName()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if obj != nil && fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() == objType {
			req.Set(fd, protoreflect.ValueOfMessage(obj.ProtoReflect()))
			continue
		}
		v, ok := fields[fd.Name()]
		if !ok || (fd.Name() == "namespace" && fd.Kind() != protoreflect.StringKind) {
			continue
		}
		if list, ok := v.([]string); ok {
			l := req.Mutable(fd).List()
			for _, s := range list {
				l.Append(protoreflect.ValueOfString(s))
			}
			continue
		}
		req.Set(fd, protoreflect.ValueOf(v))
	}
	if err := c.conn.Invoke(ctx, "/"+k.ServiceName()+"/"+method, req.Interface(), out); err != nil {
		return apierrors.FromError(err)
	}
	return nil
}

func (c *grpcClient) kindOf(obj scheme.Object) (*scheme.Kind, error) {
	return kindOf(c.scheme, obj)
}

func (c *grpcClient) Create(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error) {
	k, err := c.kindOf(obj)
	if err != nil {
		return nil, err
	}
	o := writeOptions(opts)
	out := k.New()
	err = c.call(ctx, k, "Create", "Create", obj, map[protoreflect.Name]any{"namespace": obj.GetMetadata().GetNamespace(),
		"dry_run": dryRunValues(o.DryRun), "field_manager": o.FieldManager}, out)
	return out, err
}

func (c *grpcClient) Get(ctx context.Context, k *scheme.Kind, ns, name string) (scheme.Object, error) {
	out := k.New()
	err := c.call(ctx, k, "Get", "Get", nil, map[protoreflect.Name]any{"namespace": ns, "name": name}, out)
	return out, err
}

func (c *grpcClient) List(ctx context.Context, k *scheme.Kind, ns string, opts ListOptions) (*List, error) {
	out := k.NewList()
	err := c.call(ctx, k, "List", "List", nil, map[protoreflect.Name]any{
		"namespace": ns, "label_selector": opts.LabelSelector, "field_selector": opts.FieldSelector,
		"limit": opts.Limit, "continue": opts.Continue,
		"resource_version": opts.ResourceVersion, "resource_version_match": opts.ResourceVersionMatch,
	}, out)
	if err != nil {
		return nil, err
	}
	return toList(out), nil
}

func toList(m proto.Message) *List {
	items, lm := scheme.ListItems(m)
	return &List{Items: items, ResourceVersion: lm.GetResourceVersion(), Continue: lm.GetContinue()}
}

func (c *grpcClient) update(ctx context.Context, obj scheme.Object, method string, opts []WriteOption) (scheme.Object, error) {
	k, err := c.kindOf(obj)
	if err != nil {
		return nil, err
	}
	o := writeOptions(opts)
	md := obj.GetMetadata()
	out := k.New()
	err = c.call(ctx, k, method, "Update", obj, map[protoreflect.Name]any{"namespace": md.GetNamespace(), "name": md.GetName(),
		"dry_run": dryRunValues(o.DryRun), "field_manager": o.FieldManager}, out)
	return out, err
}

func (c *grpcClient) Update(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error) {
	return c.update(ctx, obj, "Update", opts)
}

func (c *grpcClient) UpdateStatus(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error) {
	return c.update(ctx, obj, "UpdateStatus", opts)
}

func (c *grpcClient) Delete(ctx context.Context, k *scheme.Kind, ns, name string, opts DeleteOptions) (scheme.Object, error) {
	fields := map[protoreflect.Name]any{"namespace": ns, "name": name, "body": deleteBody(opts).ProtoReflect()}
	out := k.New()
	err := c.call(ctx, k, "Delete", "Delete", nil, fields, out)
	return out, err
}

// deleteBody is the DeleteOptions a delete sends, as Kubernetes clients send it.
func deleteBody(opts DeleteOptions) *metav1.DeleteOptions {
	body := &metav1.DeleteOptions{ApiVersion: "v1", Kind: "DeleteOptions", GracePeriodSeconds: opts.GracePeriodSeconds,
		PropagationPolicy: opts.PropagationPolicy, DryRun: dryRunValues(opts.DryRun)}
	if opts.ResourceVersion != "" || opts.UID != "" {
		body.Preconditions = &metav1.Preconditions{Uid: opts.UID, ResourceVersion: opts.ResourceVersion}
	}
	return body
}

// binding is the Binding of pod ns/name to node.
func binding(ns, name, node string) *corev1.Binding {
	return &corev1.Binding{ApiVersion: "v1", Kind: "Binding",
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns},
		Target:   &metav1.ObjectReference{Kind: "Node", Name: node}}
}

func (c *grpcClient) Bind(ctx context.Context, ns, name, node string, opts ...WriteOption) error {
	k, err := c.scheme.ForMessage(&corev1.Pod{})
	if err != nil {
		return err
	}
	return c.call(ctx, k, "Bind", "Bind", nil, map[protoreflect.Name]any{
		"namespace": ns, "name": name, "binding": binding(ns, name, node).ProtoReflect(),
		"dry_run": dryRunValues(writeOptions(opts).DryRun),
	}, &metav1.Status{})
}

func (c *grpcClient) Watch(ctx context.Context, k *scheme.Kind, ns string, opts WatchOptions, handle func(WatchEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reqType, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(k.ProtoPackage() + ".List" + k.Kind + "Request"))
	if err != nil {
		return err
	}
	evType, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(k.ProtoPackage() + "." + k.Kind + "WatchEvent"))
	if err != nil {
		return err
	}
	req := reqType.New()
	set := func(name protoreflect.Name, v string) {
		if fd := req.Descriptor().Fields().ByName(name); fd != nil && v != "" {
			req.Set(fd, protoreflect.ValueOfString(v))
		}
	}
	set("namespace", ns)
	set("label_selector", opts.LabelSelector)
	set("field_selector", opts.FieldSelector)
	set("resource_version", opts.ResourceVersion)
	stream, err := c.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/"+k.ServiceName()+"/Watch")
	if err != nil {
		return apierrors.FromError(err)
	}
	if err := stream.SendMsg(req.Interface()); err != nil {
		return apierrors.FromError(err)
	}
	if err := stream.CloseSend(); err != nil {
		return apierrors.FromError(err)
	}
	fields := evType.Descriptor().Fields()
	for {
		ev := evType.New()
		if err := stream.RecvMsg(ev.Interface()); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return apierrors.FromError(err)
		}
		obj := ev.Get(fields.ByName("object")).Message().Interface().(scheme.Object)
		if err := handle(WatchEvent{Type: ev.Get(fields.ByName("type")).String(), Object: obj}); err != nil {
			return err
		}
	}
}
