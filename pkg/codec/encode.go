// Package codec converts Skiff's protobuf API objects to and from JSON in Kubernetes' shapes.
//
// protojson is not used because its output differs from what Kubernetes clients expect: it
// writes 64-bit integers as strings, drops optional fields set to zero unless asked to emit
// every zero value, and encodes IntOrString as an object. This codec walks messages with
// protoreflect instead and follows encoding/json's conventions, which are Kubernetes' own.
package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/schema"
)

// intOrStringName is the message encoded as a bare JSON number or string.
const intOrStringName = schema.IntOrStringMessage

// fieldsV1Name is the message that holds a managed-fields set as raw JSON, written as that
// JSON object ({"f:spec":{...}}), as Kubernetes writes FieldsV1.
const fieldsV1Name = schema.FieldsV1Message

// Marshal encodes m as compact JSON. Fields appear in declaration order under their JSON
// names; a field is written only when populated (see protoreflect.Message.Has), so optional
// scalars set to zero and set-but-empty messages are written while unset ones are not.
func Marshal(m proto.Message) ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	rm := m.ProtoReflect()
	if !rm.IsValid() {
		return []byte("null"), nil
	}
	e := encoder{buf: make([]byte, 0, 512)}
	if err := e.message(rm); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// MarshalIndent is Marshal with each element on its own line, indented by indent per level.
func MarshalIndent(m proto.Message, indent string) ([]byte, error) {
	b, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	out.Grow(len(b) * 2)
	if err := json.Indent(&out, b, "", indent); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// encoder appends to a byte slice: strconv's Append functions then write in place, with no
// intermediate values.
type encoder struct {
	buf []byte
}

func (e *encoder) message(m protoreflect.Message) error {
	md := m.Descriptor()
	if md.FullName() == intOrStringName {
		return e.intOrString(m)
	}
	if md.FullName() == fieldsV1Name {
		return e.fieldsV1(m)
	}
	e.buf = append(e.buf, '{')
	fields := md.Fields()
	first := true
	for i, n := 0, fields.Len(); i < n; i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		if !first {
			e.buf = append(e.buf, ',')
		}
		first = false
		e.buf = appendString(e.buf, fd.JSONName())
		e.buf = append(e.buf, ':')
		var err error
		switch v := m.Get(fd); {
		case fd.IsList():
			err = e.list(fd, v.List())
		case fd.IsMap():
			err = e.mapValue(fd, v.Map())
		default:
			err = e.value(fd, v)
		}
		if err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

// intOrString writes the set member bare. An IntOrString with neither member set is written
// as 0, which is what Kubernetes' zero IntOrString (Type Int, IntVal 0) marshals to.
func (e *encoder) intOrString(m protoreflect.Message) error {
	fields := m.Descriptor().Fields()
	if s := fields.ByName("str_val"); s != nil && m.Has(s) {
		e.buf = appendString(e.buf, m.Get(s).String())
		return nil
	}
	var n int64
	if i := fields.ByName("int_val"); i != nil {
		n = m.Get(i).Int()
	}
	e.buf = strconv.AppendInt(e.buf, n, 10)
	return nil
}

// fieldsV1 writes the raw JSON object; anything that is not one is written as {} so that the
// output stays valid JSON.
func (e *encoder) fieldsV1(m protoreflect.Message) error {
	raw := m.Get(m.Descriptor().Fields().ByName("raw")).Bytes()
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		e.buf = append(e.buf, "{}"...)
		return nil
	}
	var out bytes.Buffer
	if err := json.Compact(&out, trimmed); err != nil {
		return fmt.Errorf("codec: fieldsV1: %w", err)
	}
	e.buf = append(e.buf, out.Bytes()...)
	return nil
}

func (e *encoder) list(fd protoreflect.FieldDescriptor, l protoreflect.List) error {
	e.buf = append(e.buf, '[')
	for i, n := 0, l.Len(); i < n; i++ {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		if err := e.value(fd, l.Get(i)); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, ']')
	return nil
}

// mapValue writes entries sorted by key, as encoding/json does, so output is deterministic.
func (e *encoder) mapValue(fd protoreflect.FieldDescriptor, mp protoreflect.Map) error {
	type entry struct {
		key string
		val protoreflect.Value
	}
	entries := make([]entry, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		entries = append(entries, entry{k.String(), v})
		return true
	})
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	vfd := fd.MapValue()
	e.buf = append(e.buf, '{')
	for i, en := range entries {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = appendString(e.buf, en.key)
		e.buf = append(e.buf, ':')
		if err := e.value(vfd, en.val); err != nil {
			return err
		}
	}
	e.buf = append(e.buf, '}')
	return nil
}

// value writes one singular value (a field, list element or map value) of fd's kind.
func (e *encoder) value(fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		e.buf = strconv.AppendBool(e.buf, v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		e.buf = strconv.AppendInt(e.buf, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		e.buf = strconv.AppendUint(e.buf, v.Uint(), 10)
	case protoreflect.FloatKind:
		return e.float(fd, v.Float(), 32)
	case protoreflect.DoubleKind:
		return e.float(fd, v.Float(), 64)
	case protoreflect.StringKind:
		e.buf = appendString(e.buf, v.String())
	case protoreflect.BytesKind:
		// encoding/json's encoding of []byte.
		e.buf = append(e.buf, '"')
		e.buf = base64.StdEncoding.AppendEncode(e.buf, v.Bytes())
		e.buf = append(e.buf, '"')
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			e.buf = appendString(e.buf, string(ev.Name()))
		} else {
			e.buf = strconv.AppendInt(e.buf, int64(v.Enum()), 10)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return e.message(v.Message())
	default:
		return fmt.Errorf("codec: field %s has unsupported kind %v", fd.FullName(), fd.Kind())
	}
	return nil
}

// float formats like encoding/json (ES6 number formatting), which also rejects NaN and ±Inf.
func (e *encoder) float(fd protoreflect.FieldDescriptor, f float64, bits int) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return fmt.Errorf("codec: field %s: unsupported value %v", fd.FullName(), f)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b := strconv.AppendFloat(e.buf, f, format, -1, bits)
	if format == 'e' {
		// Clean up e-09 to e-9.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	e.buf = b
	return nil
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string exactly as encoding/json writes it (see
// appendString): for writers of JSON that must match encoding/json byte for byte.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

// appendString quotes s exactly as encoding/json does (with HTML escaping, which Kubernetes'
// API server keeps on): invalid UTF-8 becomes U+FFFD and U+2028/U+2029 are escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
