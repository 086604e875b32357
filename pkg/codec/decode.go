package codec

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Unmarshal parses the JSON object data into m, which is reset first. Fields are matched by
// JSON name or by proto name, case-sensitively; fields m does not have are ignored, as the
// Kubernetes API server ignores them. null leaves a field unset. Errors name the JSON path of
// the offending value, e.g. "spec.replicas: cannot unmarshal 1.5 into int32".
//
// As in Kubernetes' JSON, timestamps (metadata.creationTimestamp, status.startTime, ...) must be
// RFC 3339 times, and a resource quantity (resources.limits, status.capacity, ...) may be given
// as a JSON number, which is kept as the quantity string it spells ("cpu": 1 is "1").
func Unmarshal(data []byte, m proto.Message) error {
	_, err := unmarshal(data, m, false)
	return err
}

// UnmarshalWithUnknown is Unmarshal that also returns the JSON paths of the ignored fields,
// in input order, e.g. "spec.template.spec.securityContext", so callers can warn about them.
func UnmarshalWithUnknown(data []byte, m proto.Message) (unknown []string, err error) {
	issues, err := unmarshal(data, m, true)
	for _, is := range issues {
		if !is.Duplicate {
			unknown = append(unknown, is.Path)
		}
	}
	return unknown, err
}

// FieldIssue is what Kubernetes' strict decoding refuses and its default decoding warns about:
// a field the message does not have, or a field (or map key) given twice, by JSON path.
type FieldIssue struct {
	Path      string
	Duplicate bool
}

// String is Kubernetes' wording: `unknown field "spec.foo"`, `duplicate field "metadata.name"`.
func (i FieldIssue) String() string {
	if i.Duplicate {
		return fmt.Sprintf("duplicate field %q", i.Path)
	}
	return fmt.Sprintf("unknown field %q", i.Path)
}

// UnmarshalWithIssues is Unmarshal that also returns the unknown and duplicate fields, in input
// order. With duplicates the last value wins for scalars and lists, as in Unmarshal.
func UnmarshalWithIssues(data []byte, m proto.Message) ([]FieldIssue, error) {
	return unmarshal(data, m, true)
}

func unmarshal(data []byte, m proto.Message, collect bool) ([]FieldIssue, error) {
	if m == nil {
		return nil, errors.New("codec: Unmarshal into nil message")
	}
	rm := m.ProtoReflect()
	if !rm.IsValid() {
		return nil, fmt.Errorf("codec: Unmarshal into nil %T", m)
	}
	// Validating up front lets the parser below trust the syntax and stay simple; on failure
	// encoding/json reports the offset of the error.
	if !json.Valid(data) {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		return nil, errors.New("invalid JSON")
	}
	proto.Reset(m)
	d := decoder{data: data, collect: collect}
	d.ws()
	if c := d.data[d.pos]; c != '{' {
		return nil, fmt.Errorf("cannot unmarshal %s into %s: expected a JSON object", jsonType(c), rm.Descriptor().Name())
	}
	if err := d.message(rm); err != nil {
		return nil, err
	}
	return d.issues, nil
}

// decoder parses JSON that json.Valid has accepted, so it only checks which kind of value
// comes next, never the syntax.
type decoder struct {
	data    []byte
	pos     int
	path    []pathElem
	collect bool
	issues  []FieldIssue
}

// pathElem is one step of the JSON path: a field name, a list index or a map key.
type pathElem struct {
	name  string
	index int
	kind  byte // 'f', 'i' or 'k'
}

func (d *decoder) pathString(extra string) string {
	var b strings.Builder
	for _, p := range d.path {
		switch p.kind {
		case 'f':
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p.name)
		case 'i':
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(p.index))
			b.WriteByte(']')
		case 'k':
			b.WriteByte('[')
			b.WriteString(p.name)
			b.WriteByte(']')
		}
	}
	if extra != "" {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(extra)
	}
	return b.String()
}

// errorf prefixes the message with the current JSON path.
func (d *decoder) errorf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p := d.pathString(""); p != "" {
		return errors.New(p + ": " + msg)
	}
	return errors.New(msg)
}

// typeError reports the value at d.pos as unsuitable for want.
func (d *decoder) typeError(want string) error {
	c := d.data[d.pos]
	switch c {
	case '"':
		s, _ := d.peekString()
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return d.errorf("cannot unmarshal string %q into %s", s, want)
	case 't', 'f', '{', '[', 'n':
		return d.errorf("cannot unmarshal %s into %s", jsonType(c), want)
	default:
		return d.errorf("cannot unmarshal %s into %s", d.peekNumber(), want)
	}
}

func jsonType(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func (d *decoder) ws() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// next skips whitespace and returns the next byte, which must exist in valid JSON.
func (d *decoder) next() byte {
	d.ws()
	return d.data[d.pos]
}

// stringEnd returns the index just past the closing quote of the string starting at start,
// whether it has escapes and whether it has non-ASCII bytes.
func (d *decoder) stringEnd(start int) (end int, escaped, nonASCII bool) {
	i := start + 1
	for {
		switch c := d.data[i]; {
		case c == '"':
			return i + 1, escaped, nonASCII
		case c == '\\':
			escaped = true
			i += 2
		case c >= utf8.RuneSelf:
			nonASCII = true
			i++
		default:
			i++
		}
	}
}

// peekString decodes the string at d.pos without consuming it.
func (d *decoder) peekString() (string, int) {
	end, escaped, nonASCII := d.stringEnd(d.pos)
	raw := d.data[d.pos:end]
	inner := raw[1 : len(raw)-1]
	if !escaped && (!nonASCII || utf8.Valid(inner)) {
		return string(inner), end
	}
	// Escapes and invalid UTF-8 are rare; encoding/json handles them (including replacing
	// bad UTF-8 and lone surrogates with U+FFFD), so strings decode exactly as it would.
	var s string
	_ = json.Unmarshal(raw, &s)
	return s, end
}

func (d *decoder) readString() string {
	s, end := d.peekString()
	d.pos = end
	return s
}

func (d *decoder) peekNumber() string {
	i := d.pos
	for i < len(d.data) {
		switch c := d.data[i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			i++
			continue
		}
		break
	}
	return string(d.data[d.pos:i])
}

func (d *decoder) readNumber() string {
	s := d.peekNumber()
	d.pos += len(s)
	return s
}

// skipValue consumes one value of any kind.
func (d *decoder) skipValue() {
	switch d.next() {
	case '"':
		d.pos, _, _ = d.stringEnd(d.pos)
	case 't', 'n':
		d.pos += 4
	case 'f':
		d.pos += 5
	case '{', '[':
		depth := 0
		for {
			switch d.data[d.pos] {
			case '"':
				d.pos, _, _ = d.stringEnd(d.pos)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			d.pos++
			if depth == 0 {
				return
			}
		}
	default:
		d.readNumber()
	}
}

// object calls f for each member of the object at d.pos, positioned at the member's value;
// f must consume the value.
func (d *decoder) object(f func(key string) error) error {
	d.pos++ // '{'
	if d.next() == '}' {
		d.pos++
		return nil
	}
	for {
		d.ws()
		key := d.readString()
		d.ws()
		d.pos++ // ':'
		d.ws()
		if err := f(key); err != nil {
			return err
		}
		if d.next() == ',' {
			d.pos++
			continue
		}
		d.pos++ // '}'
		return nil
	}
}

// array calls f for each element of the array at d.pos, as object does for members.
func (d *decoder) array(f func(i int) error) error {
	d.pos++ // '['
	if d.next() == ']' {
		d.pos++
		return nil
	}
	for i := 0; ; i++ {
		d.ws()
		if err := f(i); err != nil {
			return err
		}
		if d.next() == ',' {
			d.pos++
			continue
		}
		d.pos++ // ']'
		return nil
	}
}

func (d *decoder) isNull() bool {
	if d.next() == 'n' {
		d.pos += 4
		return true
	}
	return false
}

// message merges the JSON object (or, for IntOrString, number or string) at d.pos into m.
func (d *decoder) message(m protoreflect.Message) error {
	md := m.Descriptor()
	if md.FullName() == intOrStringName {
		return d.intOrString(m)
	}
	if d.next() != '{' {
		return d.typeError("object")
	}
	if md.FullName() == fieldsV1Name {
		start := d.pos
		d.skipValue()
		m.Set(md.Fields().ByName("raw"), protoreflect.ValueOfBytes(append([]byte(nil), d.data[start:d.pos]...)))
		return nil
	}
	fields := md.Fields()
	var seen fieldSet
	return d.object(func(key string) error {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(key))
		}
		if fd == nil {
			if d.collect {
				d.issues = append(d.issues, FieldIssue{Path: d.pathString(key)})
			}
			d.skipValue()
			return nil
		}
		// A field given twice, possibly once by JSON name and once by proto name.
		if d.collect && seen.add(fd.Index()) {
			d.issues = append(d.issues, FieldIssue{Path: d.pathString(fd.JSONName()), Duplicate: true})
		}
		d.path = append(d.path, pathElem{name: fd.JSONName(), kind: 'f'})
		err := d.field(m, fd)
		d.path = d.path[:len(d.path)-1]
		return err
	})
}

func (d *decoder) intOrString(m protoreflect.Message) error {
	fields := m.Descriptor().Fields()
	switch d.next() {
	case '"':
		m.Set(fields.ByName("str_val"), protoreflect.ValueOfString(d.readString()))
		return nil
	case '{', '[', 't', 'f':
		return d.typeError("int or string")
	}
	lit := d.peekNumber()
	n, err := parseInt(lit, 32)
	if err != nil {
		return d.numberError(lit, "int or string", err)
	}
	d.pos += len(lit)
	m.Set(fields.ByName("int_val"), protoreflect.ValueOfInt32(int32(n)))
	return nil
}

// field decodes the value at d.pos into fd of m. Like encoding/json, a repeated field is
// replaced while a message or map field is merged into.
func (d *decoder) field(m protoreflect.Message, fd protoreflect.FieldDescriptor) error {
	if d.isNull() {
		m.Clear(fd)
		return nil
	}
	switch {
	case fd.IsList():
		if d.data[d.pos] != '[' {
			return d.typeError("array")
		}
		l := m.Mutable(fd).List()
		l.Truncate(0)
		return d.array(func(i int) error {
			d.path = append(d.path, pathElem{index: i, kind: 'i'})
			defer func() { d.path = d.path[:len(d.path)-1] }()
			if fd.Message() != nil {
				v := l.NewElement()
				if !d.isNull() {
					if err := d.message(v.Message()); err != nil {
						return err
					}
				}
				l.Append(v)
				return nil
			}
			v, err := d.scalar(fd)
			if err != nil {
				return err
			}
			l.Append(v)
			return nil
		})
	case fd.IsMap():
		if d.data[d.pos] != '{' {
			return d.typeError("object")
		}
		mp := m.Mutable(fd).Map()
		kfd, vfd := fd.MapKey(), fd.MapValue()
		quantities := isQuantityMap(fd)
		var seenKeys map[string]struct{}
		return d.object(func(key string) error {
			d.path = append(d.path, pathElem{name: key, kind: 'k'})
			defer func() { d.path = d.path[:len(d.path)-1] }()
			mk, err := d.mapKey(kfd, key)
			if err != nil {
				return err
			}
			if d.collect {
				if seenKeys == nil {
					seenKeys = map[string]struct{}{}
				}
				if _, dup := seenKeys[key]; dup {
					d.issues = append(d.issues, FieldIssue{Path: d.pathString(""), Duplicate: true})
				}
				seenKeys[key] = struct{}{}
			}
			if quantities && isNumberStart(d.next()) {
				mp.Set(mk, protoreflect.ValueOfString(d.readNumber()))
				return nil
			}
			if vfd.Message() != nil {
				v := mp.Mutable(mk)
				if d.isNull() {
					return nil
				}
				return d.message(v.Message())
			}
			v, err := d.scalar(vfd)
			if err != nil {
				return err
			}
			mp.Set(mk, v)
			return nil
		})
	case fd.Message() != nil:
		return d.message(m.Mutable(fd).Message())
	default:
		v, err := d.scalar(fd)
		if err != nil {
			return err
		}
		m.Set(fd, v)
		return nil
	}
}

// mapKey converts an object key to fd's key kind; JSON keys are always strings.
func (d *decoder) mapKey(fd protoreflect.FieldDescriptor, key string) (protoreflect.MapKey, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(key).MapKey(), nil
	case protoreflect.BoolKind:
		switch key {
		case "true":
			return protoreflect.ValueOfBool(true).MapKey(), nil
		case "false":
			return protoreflect.ValueOfBool(false).MapKey(), nil
		}
	default:
		if v, err := intValue(fd.Kind(), key); err == nil {
			return v.MapKey(), nil
		}
	}
	return protoreflect.MapKey{}, d.errorf("invalid map key %q for %v", key, fd.Kind())
}

// scalar decodes a non-message value of fd's kind. A null list element or map value gives the
// zero value, as in encoding/json.
func (d *decoder) scalar(fd protoreflect.FieldDescriptor) (protoreflect.Value, error) {
	if d.isNull() {
		return fd.Default(), nil
	}
	c := d.data[d.pos]
	k := fd.Kind()
	switch k {
	case protoreflect.StringKind:
		if c != '"' {
			return protoreflect.Value{}, d.typeError("string")
		}
		s := d.peekStringOnly()
		if s != "" && isTimestampField(fd) {
			if _, err := time.Parse(time.RFC3339, s); err != nil {
				if len(s) > 40 {
					s = s[:40] + "..."
				}
				return protoreflect.Value{}, d.errorf("cannot parse %q as a time: it must be RFC 3339, such as \"2006-01-02T15:04:05Z\"", s)
			}
		}
		d.readString()
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		switch c {
		case 't':
			d.pos += 4
			return protoreflect.ValueOfBool(true), nil
		case 'f':
			d.pos += 5
			return protoreflect.ValueOfBool(false), nil
		}
		return protoreflect.Value{}, d.typeError("bool")
	case protoreflect.BytesKind:
		if c != '"' {
			return protoreflect.Value{}, d.typeError("bytes")
		}
		s := d.peekStringOnly()
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return protoreflect.Value{}, d.errorf("cannot unmarshal string into bytes: %v", err)
		}
		d.readString()
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.EnumKind:
		if c == '"' {
			s := d.peekStringOnly()
			if ev := fd.Enum().Values().ByName(protoreflect.Name(s)); ev != nil {
				d.readString()
				return protoreflect.ValueOfEnum(ev.Number()), nil
			}
			return protoreflect.Value{}, d.errorf("unknown value %q for enum %s", s, fd.Enum().FullName())
		}
		if c == '{' || c == '[' || c == 't' || c == 'f' {
			return protoreflect.Value{}, d.typeError("enum")
		}
		lit := d.peekNumber()
		n, err := parseInt(lit, 32)
		if err != nil {
			return protoreflect.Value{}, d.numberError(lit, "enum", err)
		}
		d.pos += len(lit)
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		bits := 64
		if k == protoreflect.FloatKind {
			bits = 32
		}
		if c == '"' || c == '{' || c == '[' || c == 't' || c == 'f' {
			return protoreflect.Value{}, d.typeError(k.String())
		}
		lit := d.peekNumber()
		f, err := strconv.ParseFloat(lit, bits)
		if err != nil {
			return protoreflect.Value{}, d.errorf("cannot unmarshal %s into %v: out of range", lit, k)
		}
		d.pos += len(lit)
		if bits == 32 {
			return protoreflect.ValueOfFloat32(float32(f)), nil
		}
		return protoreflect.ValueOfFloat64(f), nil
	}
	// Integers. 64-bit ones may also be quoted, as protojson writes them.
	is64 := k == protoreflect.Int64Kind || k == protoreflect.Sint64Kind || k == protoreflect.Sfixed64Kind ||
		k == protoreflect.Uint64Kind || k == protoreflect.Fixed64Kind
	var lit string
	switch {
	case c == '"' && is64:
		lit = d.peekStringOnly()
		if !isJSONNumber(lit) {
			return protoreflect.Value{}, d.typeError(k.String())
		}
		v, err := intValue(k, lit)
		if err != nil {
			return protoreflect.Value{}, d.numberError(strconv.Quote(lit), k.String(), err)
		}
		d.readString()
		return v, nil
	case c == '"' || c == '{' || c == '[' || c == 't' || c == 'f':
		return protoreflect.Value{}, d.typeError(k.String())
	}
	lit = d.peekNumber()
	v, err := intValue(k, lit)
	if err != nil {
		return protoreflect.Value{}, d.numberError(lit, k.String(), err)
	}
	d.pos += len(lit)
	return v, nil
}

func (d *decoder) peekStringOnly() string {
	s, _ := d.peekString()
	return s
}

// intValue parses the JSON number lit as a value of integer kind k.
func intValue(k protoreflect.Kind, lit string) (protoreflect.Value, error) {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := parseInt(lit, 32)
		return protoreflect.ValueOfInt32(int32(n)), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := parseInt(lit, 64)
		return protoreflect.ValueOfInt64(n), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := parseUint(lit, 32)
		return protoreflect.ValueOfUint32(uint32(n)), err
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := parseUint(lit, 64)
		return protoreflect.ValueOfUint64(n), err
	}
	return protoreflect.Value{}, errNotInteger
}

// Reasons an integer does not parse; numberError turns them into messages with the path.
var (
	errNotInteger = errors.New("not an integer")
	errRange      = errors.New("out of range")
)

func (d *decoder) numberError(lit, want string, err error) error {
	if errors.Is(err, errRange) {
		return d.errorf("cannot unmarshal %s into %s: out of range", lit, want)
	}
	return d.errorf("cannot unmarshal %s into %s", lit, want)
}

func parseInt(lit string, bits int) (int64, error) {
	neg, digits, err := integerDigits(lit)
	if err != nil {
		return 0, err
	}
	if neg {
		digits = "-" + digits
	}
	n, perr := strconv.ParseInt(digits, 10, bits)
	if perr != nil {
		return 0, errRange
	}
	return n, nil
}

func parseUint(lit string, bits int) (uint64, error) {
	neg, digits, err := integerDigits(lit)
	if err != nil {
		return 0, err
	}
	if neg && digits != "0" {
		return 0, errRange
	}
	n, perr := strconv.ParseUint(digits, 10, bits)
	if perr != nil {
		return 0, errRange
	}
	return n, nil
}

// integerDigits returns the decimal digits of the JSON number lit if its value is an integer:
// "1.0e2" gives "100", "1.5" is an error. It works on the digits rather than a float64 so
// large int64 values written as "9.007199254740993e15" stay exact.
func integerDigits(lit string) (neg bool, digits string, err error) {
	s := lit
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	intPart, frac, exp := s, "", ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		intPart, exp = s[:i], s[i+1:]
	}
	if i := strings.IndexByte(intPart, '.'); i >= 0 {
		intPart, frac = intPart[:i], intPart[i+1:]
	}
	mant := strings.TrimLeft(intPart+frac, "0")
	if mant == "" {
		return false, "0", nil // zero, whatever the exponent
	}
	// point is where the decimal point falls in mant.
	point := len(mant) - len(frac)
	if exp != "" {
		e, perr := strconv.Atoi(strings.TrimPrefix(exp, "+"))
		if perr != nil {
			if strings.HasPrefix(exp, "-") {
				return false, "", errNotInteger
			}
			return false, "", errRange
		}
		point += e
	}
	mant = strings.TrimRight(mant, "0")
	switch {
	case point < len(mant):
		return false, "", errNotInteger
	case point > 20: // more digits than any uint64
		return false, "", errRange
	}
	return neg, mant + strings.Repeat("0", point-len(mant)), nil
}

// isJSONNumber reports whether s is a number in JSON syntax, for integers given as strings.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// fieldSet records which fields of one message were given, by field index.
type fieldSet struct {
	low  uint64 // indexes below 64, which is every field of every Skiff message today
	high map[int]struct{}
}

// add records index i and reports whether it was already there.
func (s *fieldSet) add(i int) bool {
	if i < 64 {
		bit := uint64(1) << i
		dup := s.low&bit != 0
		s.low |= bit
		return dup
	}
	if s.high == nil {
		s.high = map[int]struct{}{}
	}
	_, dup := s.high[i]
	s.high[i] = struct{}{}
	return dup
}

func isNumberStart(c byte) bool { return c == '-' || (c >= '0' && c <= '9') }
