package apiserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// inprocConn lets the REST gateway call the gRPC handlers directly instead of over a loopback
// connection: the same handlers, validation and metrics, without a second encode, decode and
// network hop per REST request.
type inprocConn struct {
	handlers map[string]func(context.Context, proto.Message) (proto.Message, error)
}

// createdKey carries where a handler records a 201, for the in-process path (a gRPC call
// sends it as a header instead).
type createdKey struct{}

func (c *inprocConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	h, ok := c.handlers[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	// What the gateway forwards as outgoing metadata (HTTP headers) is what a gRPC server
	// would receive.
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	created := new(bool)
	ctx = context.WithValue(ctx, createdKey{}, created)
	resp, err := h(ctx, args.(proto.Message))
	if err != nil {
		return err
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return fmt.Errorf("reply %T is not a proto message", reply)
	}
	proto.Merge(out, resp)
	if *created {
		for _, o := range opts {
			if h, ok := o.(grpc.HeaderCallOption); ok {
				*h.HeaderAddr = metadata.Pairs(httpCodeHeader, "201")
			}
		}
	}
	return nil
}

func (c *inprocConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "streams are not served in process")
}

// setCreated makes the REST answer 201 Created, over either path.
func setCreated(ctx context.Context) {
	if created, ok := ctx.Value(createdKey{}).(*bool); ok {
		*created = true
		return
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(httpCodeHeader, "201"))
}
