package fieldmanager

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/schema"
	"github.com/skiff-project/skiff/pkg/codec"
)

// MessageSet is ObjectSet of m's JSON form as pkg/codec writes it, built from the message
// itself: a create tracks its fields without encoding the object to JSON and decoding it
// again, which was most of a create's CPU. ok is false where only the JSON walk gives the
// same answer (a string that is not UTF-8, which JSON turns into U+FFFD; a float the codec
// refuses): the caller then takes that path.
func MessageSet(m protoreflect.Message) (s Set, ok bool) {
	b := setBuilder{ok: true}
	s = b.message(m)
	return s, b.ok
}

type setBuilder struct{ ok bool }

func (b *setBuilder) message(m protoreflect.Message) Set {
	s := Set{}
	// Range visits the populated fields: exactly those the codec writes.
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		s["f:"+fd.JSONName()] = b.field(fd, v)
		return b.ok
	})
	return s
}

// field is valueSet of the field's JSON value.
func (b *setBuilder) field(fd protoreflect.FieldDescriptor, v protoreflect.Value) Set {
	switch {
	case fd.IsList():
		return b.list(fd, v.List())
	case fd.IsMap():
		s := Set{}
		vfd := fd.MapValue()
		v.Map().Range(func(k protoreflect.MapKey, ev protoreflect.Value) bool {
			key := k.String()
			if !utf8.ValidString(key) {
				b.ok = false
				return false
			}
			switch {
			case vfd.Message() == nil:
				b.scalar(vfd, ev)
				s["f:"+key] = Set{}
			case vfd.Message().FullName() == schema.IntOrStringMessage:
				s["f:"+key] = Set{} // written as a bare value
			case vfd.Message().FullName() == schema.FieldsV1Message:
				b.ok = false // its raw JSON object would be walked as fields
			default:
				s["f:"+key] = b.message(ev.Message())
			}
			return b.ok
		})
		return s
	case fd.Message() != nil:
		if isOpaque(fd.Message()) {
			return Set{}
		}
		return b.message(v.Message())
	}
	b.scalar(fd, v)
	return Set{}
}

// scalar only checks that the JSON walk would see the same value.
func (b *setBuilder) scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) {
	switch fd.Kind() {
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if f := v.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			b.ok = false
		}
	}
}

func (b *setBuilder) list(fd protoreflect.FieldDescriptor, l protoreflect.List) Set {
	info := schema.List(fd)
	s := Set{}
	switch {
	case info.Type == schema.Map && fd.Message() != nil:
		md := fd.Message()
		if isOpaque(md) {
			if md.FullName() == schema.FieldsV1Message {
				b.ok = false
			}
			return s // bare values are not items the JSON walk keys
		}
		for i, n := 0, l.Len(); i < n && b.ok; i++ {
			item := l.Get(i).Message()
			sub := b.message(item)
			sub["."] = Set{}
			key := b.itemKey(item, info.Keys)
			s["k:"+key] = sub
		}
	case info.Type == schema.Set:
		for i, n := 0, l.Len(); i < n && b.ok; i++ {
			enc, err := json.Marshal(b.jsonValue(fd, l.Get(i)))
			if err != nil {
				b.ok = false
				break
			}
			s["v:"+string(enc)] = Set{}
		}
	default:
		// An atomic list is one leaf; its items are only checked for what the codec refuses.
		for i, n := 0, l.Len(); i < n && b.ok; i++ {
			if fd.Message() == nil {
				b.scalar(fd, l.Get(i))
			} else if !isOpaque(fd.Message()) {
				b.message(l.Get(i).Message())
			}
		}
	}
	return s
}

// itemKey is itemKey of the item's JSON form.
func (b *setBuilder) itemKey(item protoreflect.Message, keys []string) string {
	k := make(map[string]any, len(keys))
	md := item.Descriptor()
	for _, name := range keys {
		if fd := fieldOf(md, name); fd != nil && item.Has(fd) {
			k[name] = b.jsonValue(fd, item.Get(fd))
		} else if d, ok := schema.KeyDefaults[name]; ok {
			k[name] = d
		}
	}
	enc, err := json.Marshal(k)
	if err != nil {
		b.ok = false
	}
	return string(enc)
}

// jsonValue is the value encoding/json decodes from the codec's JSON of one singular value
// of fd: strings, float64 numbers, bools, and for anything else the decoded JSON itself.
func (b *setBuilder) jsonValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !utf8.ValidString(v.String()) {
			b.ok = false
		}
		return v.String()
	case protoreflect.BoolKind:
		return v.Bool()
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return float64(v.Int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return float64(v.Uint())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		b.scalar(fd, v)
		bits := 64
		if fd.Kind() == protoreflect.FloatKind {
			bits = 32
		}
		f, _ := strconv.ParseFloat(strconv.FormatFloat(v.Float(), 'g', -1, bits), 64)
		return f
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return float64(v.Enum())
	}
	// A message: its JSON, decoded (rare: no key or set value of the API is a message).
	enc, err := codec.Marshal(v.Message().Interface())
	var out any
	if err != nil || json.Unmarshal(enc, &out) != nil {
		b.ok = false
	}
	return out
}

// appendFieldsV1 writes s as json.Marshal does (keys sorted, strings escaped alike), without
// its reflection.
func appendFieldsV1(dst []byte, s Set) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = codec.AppendString(dst, k)
		dst = append(dst, ':')
		dst = appendFieldsV1(dst, s[k])
	}
	return append(dst, '}')
}

// MessageJSON is m's JSON form as pkg/codec writes it and encoding/json decodes it
// (objects, []any, strings, float64 numbers, bools), built from the message without the
// round trip through bytes. ok is false where only the round trip gives the same value (a
// string that is not UTF-8, a float the codec refuses).
func MessageJSON(m protoreflect.Message) (out map[string]any, ok bool) {
	b := setBuilder{ok: true}
	out = b.object(m)
	return out, b.ok
}

func (b *setBuilder) object(m protoreflect.Message) map[string]any {
	out := map[string]any{}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			l := v.List()
			items := make([]any, l.Len())
			for i := range items {
				items[i] = b.value(fd, l.Get(i))
			}
			out[fd.JSONName()] = items
		case fd.IsMap():
			mv := map[string]any{}
			vfd := fd.MapValue()
			v.Map().Range(func(k protoreflect.MapKey, ev protoreflect.Value) bool {
				key := k.String()
				if !utf8.ValidString(key) {
					b.ok = false
				}
				mv[key] = b.value(vfd, ev)
				return b.ok
			})
			out[fd.JSONName()] = mv
		default:
			out[fd.JSONName()] = b.value(fd, v)
		}
		return b.ok
	})
	return out
}

// value is one singular value's JSON, decoded.
func (b *setBuilder) value(fd protoreflect.FieldDescriptor, v protoreflect.Value) any {
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return b.jsonValue(fd, v)
	}
	m := v.Message()
	md := m.Descriptor()
	switch md.FullName() {
	case schema.IntOrStringMessage:
		fields := md.Fields()
		if s := fields.ByName("str_val"); s != nil && m.Has(s) {
			if !utf8.ValidString(m.Get(s).String()) {
				b.ok = false
			}
			return m.Get(s).String()
		}
		var n int64
		if i := fields.ByName("int_val"); i != nil {
			n = m.Get(i).Int()
		}
		return float64(n)
	case schema.FieldsV1Message:
		raw := bytes.TrimSpace(m.Get(md.Fields().ByName("raw")).Bytes())
		if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
			return map[string]any{}
		}
		var out any
		if err := json.Unmarshal(raw, &out); err != nil {
			b.ok = false
		}
		return out
	}
	return b.object(m)
}
