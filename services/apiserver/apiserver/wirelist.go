package apiserver

import (
	"context"
	"fmt"
	"net/http"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// Lists leave in wire form (registry.ListEncoded): over gRPC as the list message's protobuf,
// which wireCodec sends as it is; over REST as its JSON, which the gateway writes as it is.
// Everything else a list request goes through (parameters, authorization, metrics, errors)
// stays the one path of every request.

// encodedList is a list already in gRPC wire form. It is a proto.Message only to pass
// through the handlers' signature (the embedded empty list); wireCodec sends wire.
type encodedList struct {
	proto.Message
	wire []byte
}

// wireCodec is gRPC's proto codec, except that an encodedList is sent as it is.
type wireCodec struct{ encoding.CodecV2 }

func newWireCodec() (wireCodec, error) {
	c := encoding.GetCodecV2(grpcproto.Name)
	if c == nil {
		return wireCodec{}, fmt.Errorf("no gRPC %s codec registered", grpcproto.Name)
	}
	return wireCodec{c}, nil
}

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if l, ok := v.(*encodedList); ok {
		return mem.BufferSlice{mem.SliceBuffer(l.wire)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// jsonListKey carries, on a REST list request, where the list's JSON goes when the answer is
// plain JSON (not a Table): the handler fills it, the gateway's response rewriter writes it.
type jsonListKey struct{}

type jsonList struct{ body []byte }

// withJSONList prepares r, a REST GET, to have its list answered in encoded JSON.
func withJSONList(r *http.Request) *http.Request {
	if r.Method != http.MethodGet || tableRequestFrom(r.Context()) != nil {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), jsonListKey{}, &jsonList{}))
}

// serveList answers a list in the wire form of the path it came by: protobuf for a gRPC
// call, JSON for a REST one, or the list message for anyone else in process (a Table).
func (s *Server) serveList(ctx context.Context, k *scheme.Kind, ns string, opts registry.ListOptions) (proto.Message, error) {
	if _, inProcess := ctx.Value(createdKey{}).(*bool); !inProcess {
		wire, err := s.registry.ListEncoded(ctx, k, ns, opts, registry.FormProto)
		if err != nil {
			return nil, err
		}
		return &encodedList{Message: k.NewList(), wire: wire}, nil
	}
	if jl, ok := ctx.Value(jsonListKey{}).(*jsonList); ok {
		body, err := s.registry.ListEncoded(ctx, k, ns, opts, registry.FormJSON)
		if err != nil {
			return nil, err
		}
		jl.body = body
		return k.NewList(), nil
	}
	return s.registry.List(ctx, k, ns, opts)
}

// listRewriter sends a list's encoded JSON as the answer, as it is.
func listRewriter(ctx context.Context, resp proto.Message) (any, bool) {
	jl, ok := ctx.Value(jsonListKey{}).(*jsonList)
	if !ok || jl.body == nil {
		return nil, false
	}
	return codec.RawJSON(jl.body), true
}
