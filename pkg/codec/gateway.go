package codec

import (
	"encoding/json"
	"io"
	"reflect"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// GatewayMarshaler is a grpc-gateway runtime.Marshaler that reads and writes Skiff's API
// messages in Kubernetes' JSON shapes.
type GatewayMarshaler struct{}

var _ runtime.Marshaler = GatewayMarshaler{}

// Marshal encodes Skiff messages with this package. Messages from google.* packages (such as
// the google.rpc.Status the gateway's default error handler writes) have canonical protojson
// mappings for their well-known types, so they keep them; other values use encoding/json.
func (GatewayMarshaler) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return json.Marshal(v)
	}
	if m.ProtoReflect().IsValid() && strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "google.") {
		return protojson.Marshal(m)
	}
	return Marshal(m)
}

// Unmarshal decodes data into v: a message, a pointer to a message pointer (allocated when
// nil, as the gateway passes &req.Pod) or, failing those, anything encoding/json accepts.
func (GatewayMarshaler) Unmarshal(data []byte, v any) error {
	if m, ok := protoTarget(v); ok {
		return Unmarshal(data, m)
	}
	return json.Unmarshal(data, v)
}

// NewDecoder returns a decoder reading successive JSON values from r. Decode returns io.EOF
// for an empty body, which the gateway treats as an empty request.
func (GatewayMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return gatewayDecoder{json.NewDecoder(r)}
}

// NewEncoder returns an encoder writing each value as one line of JSON.
func (g GatewayMarshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := g.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	})
}

// ContentType is always application/json.
func (GatewayMarshaler) ContentType(any) string { return "application/json" }

// Delimiter separates streamed messages.
func (GatewayMarshaler) Delimiter() []byte { return []byte("\n") }

type gatewayDecoder struct {
	dec *json.Decoder
}

func (g gatewayDecoder) Decode(v any) error {
	m, ok := protoTarget(v)
	if !ok {
		return g.dec.Decode(v)
	}
	var raw json.RawMessage
	if err := g.dec.Decode(&raw); err != nil {
		return err
	}
	return Unmarshal(raw, m)
}

// protoTarget finds the message to decode into: v itself, or *v when v is a pointer to a
// message pointer, allocating *v if nil.
func protoTarget(v any) (proto.Message, bool) {
	if m, ok := v.(proto.Message); ok {
		return m, true
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, false
	}
	ev := rv.Elem()
	if ev.Kind() != reflect.Pointer || !ev.Type().Implements(reflect.TypeFor[proto.Message]()) {
		return nil, false
	}
	if ev.IsNil() {
		ev.Set(reflect.New(ev.Type().Elem()))
	}
	return ev.Interface().(proto.Message), true
}
