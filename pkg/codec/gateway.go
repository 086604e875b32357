package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/limits"
	"github.com/skiff-project/skiff/pkg/apis/schema"
	"github.com/skiff-project/skiff/pkg/codec/kubeproto"
)

// GatewayMarshaler is a grpc-gateway runtime.Marshaler that reads and writes Skiff's API
// messages in Kubernetes' JSON shapes.
type GatewayMarshaler struct{}

var _ runtime.Marshaler = GatewayMarshaler{}

// RawJSON is an answer already encoded as JSON; GatewayMarshaler writes it as it is.
type RawJSON []byte

// Marshal encodes Skiff messages with this package. Messages from google.* packages (such as
// the google.rpc.Status the gateway's default error handler writes) have canonical protojson
// mappings for their well-known types, so they keep them; other values use encoding/json.
func (GatewayMarshaler) Marshal(v any) ([]byte, error) {
	if raw, ok := v.(RawJSON); ok {
		return raw, nil
	}
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

// NewDecoder returns a decoder of the request body r, which must be one JSON value: trailing
// data (a second object, garbage) is an error, as in Kubernetes. Decode returns io.EOF for an
// empty body, which the gateway treats as an empty request, and on every call after the first.
// When r implements BodyOptions, messages are decoded with its field validation.
func (GatewayMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	return &gatewayDecoder{r: r}
}

// FieldValidation is Kubernetes' fieldValidation: what decoding a request body does about
// fields the object does not have and fields given twice.
type FieldValidation string

const (
	// FieldValidationIgnore drops them silently.
	FieldValidationIgnore FieldValidation = "Ignore"
	// FieldValidationWarn, the default, decodes and warns about each.
	FieldValidationWarn FieldValidation = "Warn"
	// FieldValidationStrict refuses the body.
	FieldValidationStrict FieldValidation = "Strict"
)

// BodyOptions is implemented by a request body that carries how to decode it. The REST front
// wraps each request body in one, so that the options reach the decoder the gateway creates,
// and the warnings get back to the response.
type BodyOptions interface {
	io.Reader
	FieldValidation() FieldValidation
	// Warn records a warning for the response, such as `unknown field "spec.foo"`.
	Warn(text string)
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
	r    io.Reader
	done bool
}

func (g *gatewayDecoder) Decode(v any) error {
	if g.done {
		return io.EOF
	}
	g.done = true
	// A reader that brings no limit of its own (the REST front's bodies do) is still bounded.
	data, err := io.ReadAll(io.LimitReader(g.r, limits.MaxRequestBodyBytes+1))
	if err != nil {
		return fmt.Errorf("read request body: %w", err)
	}
	if len(data) > limits.MaxRequestBodyBytes {
		return fmt.Errorf("request body is larger than %d bytes", limits.MaxRequestBodyBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return io.EOF
	}
	m, ok := protoTarget(v)
	if !ok {
		return json.Unmarshal(data, v)
	}
	opts, _ := g.r.(BodyOptions)
	if opts == nil || opts.FieldValidation() == FieldValidationIgnore {
		return Unmarshal(data, m)
	}
	issues, err := UnmarshalWithIssues(data, m)
	if err != nil {
		return err
	}
	return CheckIssues(m, issues, opts.FieldValidation(), opts.Warn)
}

// CheckIssues applies a request's field validation to the unknown and duplicate fields
// decoding m found, as Kubernetes does: Strict refuses them, Warn reports each through warn,
// Ignore drops them. A field Kubernetes' own type has but Skiff does not model (hostIPC,
// imagePullSecrets, ...) is never refused: Kubernetes would accept it, so Skiff accepts it
// too, ignores it and says so in a warning.
func CheckIssues(m proto.Message, issues []FieldIssue, v FieldValidation, warn func(string)) error {
	if v == FieldValidationIgnore || len(issues) == 0 {
		return nil
	}
	definition := schema.DefinitionName(m.ProtoReflect().Descriptor())
	var refused []string
	for _, is := range issues {
		if !is.Duplicate && kubeproto.KnownField(definition, is.Path) {
			if warn != nil {
				warn(fmt.Sprintf("field %q is not supported by Skiff and was ignored", is.Path))
			}
			continue
		}
		if v == FieldValidationStrict {
			refused = append(refused, is.String())
		} else if warn != nil {
			warn(is.String())
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("strict decoding error: %s", strings.Join(refused, ", "))
	}
	return nil
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
