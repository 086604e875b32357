package publisher

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// The publisher looks at both values of every change: which node a pod is on, and whether
// labels or selectable fields changed (then the message carries the previous object, see
// bus.HeaderPrevOffset). Decoding whole objects for that was most of its CPU, so it reads
// those few fields off the wire instead. Stored values are not deterministically encoded
// (map entries come in any order), so labels are compared as sets, and the reader follows
// protobuf's rules: the last occurrence of a field wins, and a message that occurs twice is
// merged.

// fieldPath is a field path ("spec.nodeName") compiled to protobuf field numbers.
type fieldPath struct {
	path string
	nums []protowire.Number
}

// compileFieldPath resolves a path of JSON field names on md. The last field may be a scalar
// or, with wantMap, a map<string, string>.
func compileFieldPath(md protoreflect.MessageDescriptor, path string, wantMap bool) (fieldPath, error) {
	fp := fieldPath{path: path}
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := md.Fields().ByJSONName(name)
		if fd == nil {
			return fieldPath{}, fmt.Errorf("field path %q: no field %q in %s", path, name, md.FullName())
		}
		fp.nums = append(fp.nums, fd.Number())
		last := i == len(parts)-1
		switch {
		case last && wantMap:
			if !fd.IsMap() || fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind {
				return fieldPath{}, fmt.Errorf("field path %q: not a map<string, string>", path)
			}
		case last:
			if fd.IsList() || fd.IsMap() || fd.Message() != nil {
				return fieldPath{}, fmt.Errorf("field path %q: not a scalar", path)
			}
		default:
			if fd.IsList() || fd.IsMap() || fd.Message() == nil {
				return fieldPath{}, fmt.Errorf("field path %q: %q is not a message", path, name)
			}
			md = fd.Message()
		}
	}
	return fp, nil
}

// selection is what label and field selectors see of one kind's objects: its labels and
// selectable fields, read in one pass over an encoded object.
type selection struct {
	root    wireTree // the top-level fields it reads
	nFields int      // scalars it reads: the selectable fields, then spec.nodeName for pods
	// nodeName is the index of spec.nodeName among the scalars for pods (-1 for other kinds):
	// pods bound to a node are also published on the node's subjects.
	nodeName int
	// family is the kind's family on the bus (bus.KindFilter over all namespaces).
	family string
}

// wireTree is a field the selection reads, or a message on the way to one.
type wireTree struct {
	num      protowire.Number
	scalar   int  // index among the scalars read, or -1
	labels   bool // the labels map
	children []*wireTree
}

func (t *wireTree) child(n protowire.Number) *wireTree {
	for _, c := range t.children {
		if c.num == n {
			return c
		}
	}
	return nil
}

// add puts the field at path nums in the tree and returns its node.
func (t *wireTree) add(nums []protowire.Number) *wireTree {
	for _, n := range nums {
		c := t.child(n)
		if c == nil {
			c = &wireTree{num: n, scalar: -1}
			t.children = append(t.children, c)
		}
		t = c
	}
	return t
}

func newSelection(k *scheme.Kind) (*selection, error) {
	md := k.New().ProtoReflect().Descriptor()
	labels, err := compileFieldPath(md, "metadata.labels", true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.Kind, err)
	}
	s := &selection{root: wireTree{scalar: -1}, nodeName: -1}
	s.root.add(labels.nums).labels = true
	paths := slices.Clone(k.SelectableFields)
	isPod := k.Group == "" && k.Kind == "Pod"
	if isPod && !slices.Contains(paths, "spec.nodeName") {
		paths = append(paths, "spec.nodeName")
	}
	for _, f := range paths {
		fp, err := compileFieldPath(md, f, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.Kind, err)
		}
		leaf := s.root.add(fp.nums)
		if leaf.scalar < 0 {
			leaf.scalar = s.nFields
			s.nFields++
		}
		if isPod && f == "spec.nodeName" {
			s.nodeName = leaf.scalar
		}
	}
	return s, nil
}

// selected is what a selection read off one encoded object. Its buffers keep the common
// case free of allocations; it must not be copied once read into.
type selected struct {
	ok        bool // false: the value was malformed
	scalars   []wireScalar
	labels    []label
	scalarBuf [12]wireScalar
	labelBuf  [8]label
}

// read reads the selection's fields off an encoded object into v.
func (s *selection) read(b []byte, v *selected) {
	if s.nFields <= len(v.scalarBuf) {
		v.scalars = v.scalarBuf[:s.nFields]
	} else {
		v.scalars = make([]wireScalar, s.nFields)
	}
	v.labels = v.labelBuf[:0]
	v.ok = readTree(b, &s.root, v)
}

// nodeOf is spec.nodeName of a pod as read ("" if unbound, unreadable, not read or not a pod).
func (s *selection) nodeOf(v *selected) string {
	if s.nodeName < 0 || !v.ok {
		return ""
	}
	return string(v.scalars[s.nodeName].bytes)
}

// node reads spec.nodeName of a stored pod.
func (s *selection) node(value []byte) string {
	var v selected
	s.read(value, &v)
	return s.nodeOf(&v)
}

// differ reports whether labels or a selectable field differ between two values as read. A
// value that could not be read counts as changed: carrying the previous object is always
// correct, only larger.
func differ(a, b *selected) bool {
	if !a.ok || !b.ok {
		return true
	}
	for i := range a.scalars {
		if a.scalars[i].num != b.scalars[i].num || !bytes.Equal(a.scalars[i].bytes, b.scalars[i].bytes) {
			return true
		}
	}
	return !sameLabels(a.labels, b.labels)
}

// changed reports whether labels or a selectable field differ between two stored values.
func (s *selection) changed(prev, cur []byte) bool {
	if bytes.Equal(prev, cur) {
		return false
	}
	var a, b selected
	s.read(prev, &a)
	s.read(cur, &b)
	return differ(&a, &b)
}

// wireScalar is a scalar as encoded: a varint or fixed-size number, or a string's bytes. An
// absent field reads as the zero value, as proto3 decodes it.
type wireScalar struct {
	num   uint64
	bytes []byte
}

// label is one map entry as encoded.
type label struct{ key, value []byte }

// readTree reads the fields of t out of the encoded message b into v, following protobuf's
// rules: the last occurrence of a scalar wins, every occurrence of a message is read (merged),
// map entries accumulate. It returns false if b is malformed.
func readTree(b []byte, t *wireTree, v *selected) bool {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return false
		}
		b = b[l:]
		c := t.child(n)
		switch {
		case c == nil:
			l = protowire.ConsumeFieldValue(n, typ, b)
		case c.scalar >= 0:
			l = readScalar(typ, b, &v.scalars[c.scalar])
		case typ != protowire.BytesType:
			return false
		case c.labels:
			var entry []byte
			entry, l = protowire.ConsumeBytes(b)
			if l >= 0 {
				e, ok := readEntry(entry)
				if !ok {
					return false
				}
				v.labels = append(v.labels, e)
			}
		default:
			var sub []byte
			sub, l = protowire.ConsumeBytes(b)
			if l >= 0 && !readTree(sub, c, v) {
				return false
			}
		}
		if l < 0 {
			return false
		}
		b = b[l:]
	}
	return true
}

// readScalar reads one scalar of wire type typ into v and returns its length (< 0 if
// malformed).
func readScalar(typ protowire.Type, b []byte, v *wireScalar) int {
	switch typ {
	case protowire.VarintType:
		x, l := protowire.ConsumeVarint(b)
		*v = wireScalar{num: x}
		return l
	case protowire.Fixed32Type:
		x, l := protowire.ConsumeFixed32(b)
		*v = wireScalar{num: uint64(x)}
		return l
	case protowire.Fixed64Type:
		x, l := protowire.ConsumeFixed64(b)
		*v = wireScalar{num: x}
		return l
	case protowire.BytesType:
		x, l := protowire.ConsumeBytes(b)
		*v = wireScalar{bytes: x}
		return l
	}
	return -1
}

// readEntry reads a map<string, string> entry (key 1, value 2; absent reads as "").
func readEntry(b []byte) (label, bool) {
	var e label
	for len(b) > 0 {
		n, t, l := protowire.ConsumeTag(b)
		if l < 0 {
			return label{}, false
		}
		b = b[l:]
		if (n == 1 || n == 2) && t == protowire.BytesType {
			v, vl := protowire.ConsumeBytes(b)
			if vl < 0 {
				return label{}, false
			}
			if n == 1 {
				e.key = v
			} else {
				e.value = v
			}
			b = b[vl:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, t, b)
		if l < 0 {
			return label{}, false
		}
		b = b[l:]
	}
	return e, true
}

// sameLabels compares two encoded maps as maps: order does not matter, and of repeated keys
// the last wins.
func sameLabels(a, b []label) bool {
	if slices.EqualFunc(a, b, labelEqual) {
		return true // the common case: unchanged, with at most one label or the same order
	}
	a, b = normalizeLabels(a), normalizeLabels(b)
	return slices.EqualFunc(a, b, labelEqual)
}

func labelEqual(x, y label) bool { return bytes.Equal(x.key, y.key) && bytes.Equal(x.value, y.value) }

// normalizeLabels sorts entries by key and keeps the last of each key.
func normalizeLabels(ls []label) []label {
	slices.SortStableFunc(ls, func(x, y label) int { return bytes.Compare(x.key, y.key) })
	out := ls[:0]
	for i, l := range ls {
		if i+1 < len(ls) && bytes.Equal(ls[i+1].key, l.key) {
			continue
		}
		out = append(out, l)
	}
	return out
}
