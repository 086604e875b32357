// Package fieldmanager keeps metadata.managedFields as Kubernetes does: which field manager
// owns which fields of an object, through which operation (Apply or Update), and implements
// server-side apply on top of it: an applied configuration sets the fields it names, takes
// back those its manager applied before and no longer names, and conflicts with other
// managers' values unless forced.
//
// Objects are handled in their JSON form (map[string]any, as encoding/json decodes them);
// field sets are Kubernetes' FieldsV1 trees ({"f:spec":{"f:replicas":{}}}), with list items
// named by their keys (k:{"name":"web"}) or values (v:"x") as pkg/apis/schema declares.
package fieldmanager

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/schema"
)

// Operations of a managed fields entry.
const (
	OperationApply  = "Apply"
	OperationUpdate = "Update"
)

// Set is a FieldsV1 field set: member name to its subset; an empty subset is a leaf (the
// member itself). "." marks a list item or object that is itself a member.
type Set map[string]Set

// Entry is one managed fields entry.
type Entry struct {
	Manager     string
	Operation   string
	APIVersion  string
	Time        string
	Subresource string
	Fields      Set
}

// ParseFieldsV1 reads a FieldsV1 JSON object.
func ParseFieldsV1(raw []byte) (Set, error) {
	s := Set{}
	if len(raw) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("fieldsV1: %w", err)
	}
	return s, nil
}

// MarshalFieldsV1 writes a set as FieldsV1 JSON (keys sorted, as Kubernetes writes them).
func (s Set) MarshalFieldsV1() []byte {
	return appendFieldsV1(make([]byte, 0, 512), s)
}

// Empty reports whether the set has no member.
func (s Set) Empty() bool { return len(s) == 0 }

// ObjectSet is the set of fields obj, an object of message type md, sets.
func ObjectSet(obj map[string]any, md protoreflect.MessageDescriptor) Set {
	s := Set{}
	for k, v := range obj {
		s["f:"+k] = valueSet(v, fieldOf(md, k))
	}
	return s
}

func valueSet(v any, fd protoreflect.FieldDescriptor) Set {
	switch x := v.(type) {
	case map[string]any:
		switch {
		case fd == nil:
			return ObjectSet(x, nil)
		case fd.IsMap():
			s := Set{}
			for k, ev := range x {
				if em, ok := ev.(map[string]any); ok && fd.MapValue().Message() != nil {
					s["f:"+k] = ObjectSet(em, fd.MapValue().Message())
				} else {
					s["f:"+k] = Set{}
				}
			}
			return s
		case fd.Message() == nil || isOpaque(fd.Message()):
			return Set{}
		}
		return ObjectSet(x, fd.Message())
	case []any:
		if fd == nil || !fd.IsList() {
			return Set{}
		}
		info := schema.List(fd)
		s := Set{}
		switch {
		case info.Type == schema.Map && fd.Message() != nil:
			for _, item := range x {
				m, ok := item.(map[string]any)
				if !ok {
					continue
				}
				sub := ObjectSet(m, fd.Message())
				sub["."] = Set{}
				s["k:"+itemKey(m, info.Keys)] = sub
			}
		case info.Type == schema.Set:
			for _, item := range x {
				b, _ := json.Marshal(item)
				s["v:"+string(b)] = Set{}
			}
		}
		return s
	}
	return Set{}
}

// itemKey is the k: name of a map-list item: its key fields as a JSON object, defaulted key
// fields (a port's protocol) filled in as Kubernetes' defaulting would.
func itemKey(item map[string]any, keys []string) string {
	k := make(map[string]any, len(keys))
	for _, name := range keys {
		if v, ok := item[name]; ok {
			k[name] = v
		} else if d, ok := schema.KeyDefaults[name]; ok {
			k[name] = d
		}
	}
	b, _ := json.Marshal(k)
	return string(b)
}

// metadataOwnedByServer are the metadata fields no manager owns.
var metadataOwnedByServer = []string{"name", "namespace", "uid", "resourceVersion", "generation",
	"creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName"}

// Scope keeps the fields one subresource's writes manage: status only for "status", and for
// the main resource (and scale) everything but status, apiVersion, kind and server-owned
// metadata.
func Scope(s Set, subresource string) Set {
	if subresource == "status" {
		out := Set{}
		if st, ok := s["f:status"]; ok {
			out["f:status"] = st
		}
		return out
	}
	out := Set{}
	for k, v := range s {
		switch k {
		case "f:status", "f:apiVersion", "f:kind":
			continue
		case "f:metadata":
			md := Set{}
			for mk, mv := range v {
				if !slices.Contains(metadataOwnedByServer, strings.TrimPrefix(mk, "f:")) {
					md[mk] = mv
				}
			}
			if len(md) > 0 {
				out[k] = md
			}
			continue
		}
		out[k] = v
	}
	return out
}

// Path is a path of set members, from the object's root.
type Path []string

// String is Kubernetes' form of a path in conflict messages: .spec.replicas,
// .spec.template.spec.containers[name="web"].image.
func (p Path) String() string {
	var b strings.Builder
	for _, e := range p {
		switch {
		case strings.HasPrefix(e, "f:"):
			b.WriteString("." + e[2:])
		case strings.HasPrefix(e, "k:"):
			var m map[string]any
			_ = json.Unmarshal([]byte(e[2:]), &m)
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			parts := make([]string, len(keys))
			for i, k := range keys {
				v, _ := json.Marshal(m[k])
				parts[i] = k + "=" + string(v)
			}
			b.WriteString("[" + strings.Join(parts, ",") + "]")
		case strings.HasPrefix(e, "v:"):
			b.WriteString("[=" + e[2:] + "]")
		}
	}
	return b.String()
}

// Leaves lists the set's leaves (members with no members), "." leaves included.
func (s Set) Leaves() []Path {
	var out []Path
	var walk func(Set, Path)
	walk = func(n Set, p Path) {
		for k, v := range n {
			q := append(append(Path(nil), p...), k)
			if len(v) == 0 {
				out = append(out, q)
				continue
			}
			walk(v, q)
		}
	}
	walk(s, nil)
	return out
}

// intersect is the members both sets hold; a leaf in one against members in the other is a
// leaf (the whole value).
func intersect(a, b Set) Set {
	out := Set{}
	for k, av := range a {
		bv, ok := b[k]
		if !ok {
			continue
		}
		if len(av) == 0 || len(bv) == 0 {
			out[k] = Set{}
			continue
		}
		if s := intersect(av, bv); len(s) > 0 {
			out[k] = s
		}
	}
	return out
}

// differences walks set over two values of the same place, a and b (aOK: a exists), and
// appends the leaves where they differ: a leaf whose value differs, a list item or set value
// that a lacks. With onlyIfPresent, leaves that a lacks are not differences. Lists are
// indexed once per list, so the walk is linear in the size of the values.
func differences(set Set, a, b any, aOK, onlyIfPresent bool, path Path, out *[]Path) {
	var aItems, bItems map[string]any
	var aValues map[string]bool
	for member, sub := range set {
		p := append(path[:len(path):len(path)], member)
		switch {
		case member == ".":
			if !aOK && !onlyIfPresent {
				*out = append(*out, p)
			}
		case strings.HasPrefix(member, "f:"):
			name := member[2:]
			var av, bv any
			found := false
			if m, ok := a.(map[string]any); ok && aOK {
				av, found = m[name]
			}
			if m, ok := b.(map[string]any); ok {
				bv = m[name]
			}
			if len(sub) == 0 {
				if (!found && !onlyIfPresent) || (found && !jsonEqual(av, bv)) {
					*out = append(*out, p)
				}
				continue
			}
			differences(sub, av, bv, found, onlyIfPresent, p, out)
		case strings.HasPrefix(member, "k:"):
			if bItems == nil {
				keys := keyNames(member)
				bItems = indexItems(b, keys)
				aItems = map[string]any{}
				if aOK {
					aItems = indexItems(a, keys)
				}
			}
			av, found := aItems[member]
			differences(sub, av, bItems[member], found, onlyIfPresent, p, out)
		case strings.HasPrefix(member, "v:"):
			if aValues == nil {
				aValues = map[string]bool{}
				if l, ok := a.([]any); ok && aOK {
					for _, v := range l {
						enc, _ := json.Marshal(v)
						aValues["v:"+string(enc)] = true
					}
				}
			}
			if !aValues[member] && !onlyIfPresent {
				*out = append(*out, p)
			}
		}
	}
}

// keyNames are the key fields a k: member names.
func keyNames(member string) []string {
	var key map[string]any
	_ = json.Unmarshal([]byte(member[2:]), &key)
	names := make([]string, 0, len(key))
	for k := range key {
		names = append(names, k)
	}
	return names
}

// indexItems maps the k: member of each item of list to the item.
func indexItems(list any, keys []string) map[string]any {
	out := map[string]any{}
	l, _ := list.([]any)
	for _, item := range l {
		if m, ok := item.(map[string]any); ok {
			out["k:"+itemKey(m, keys)] = m
		}
	}
	return out
}

// Has reports whether the set holds path p as a leaf.
func (s Set) Has(p Path) bool {
	n := s
	for i, e := range p {
		sub, ok := n[e]
		if !ok {
			return false
		}
		if i == len(p)-1 {
			return len(sub) == 0
		}
		n = sub
	}
	return false
}

// Add adds path p as a leaf.
func (s Set) Add(p Path) {
	n := s
	for i, e := range p {
		sub, ok := n[e]
		if !ok {
			sub = Set{}
			n[e] = sub
		}
		if i == len(p)-1 {
			return
		}
		n = sub
	}
}

// Remove removes leaf p and any member left empty by it.
func (s Set) Remove(p Path) {
	if len(p) == 0 {
		return
	}
	sub, ok := s[p[0]]
	if !ok {
		return
	}
	if len(p) == 1 {
		if len(sub) == 0 {
			delete(s, p[0])
		}
		return
	}
	sub.Remove(p[1:])
	if len(sub) == 0 {
		delete(s, p[0])
	}
}

// valueAt finds the value at path p in obj: the field, list item (k:) or set value (v:). A
// "." member is the object or item itself.
func valueAt(obj any, p Path) (any, bool) {
	cur := obj
	for _, e := range p {
		switch {
		case e == ".":
			return cur, true
		case strings.HasPrefix(e, "f:"):
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			if cur, ok = m[e[2:]]; !ok {
				return nil, false
			}
		case strings.HasPrefix(e, "k:"):
			l, ok := cur.([]any)
			if !ok {
				return nil, false
			}
			idx := findItem(l, e)
			if idx < 0 {
				return nil, false
			}
			cur = l[idx]
		case strings.HasPrefix(e, "v:"):
			l, ok := cur.([]any)
			if !ok {
				return nil, false
			}
			var want any
			_ = json.Unmarshal([]byte(e[2:]), &want)
			found := false
			for _, v := range l {
				if jsonEqual(v, want) {
					found = true
				}
			}
			if !found {
				return nil, false
			}
			cur = want
		default:
			return nil, false
		}
	}
	return cur, true
}

// findItem returns the index of the list item a k: member names, or -1.
func findItem(l []any, member string) int {
	var key map[string]any
	if err := json.Unmarshal([]byte(member[2:]), &key); err != nil {
		return -1
	}
	keys := make([]string, 0, len(key))
	for k := range key {
		keys = append(keys, k)
	}
	for i, item := range l {
		if m, ok := item.(map[string]any); ok && "k:"+itemKey(m, keys) == member {
			return i
		}
	}
	return -1
}

// removeAt deletes the value at path p from obj (a field, a list item or a set value).
func removeAt(obj map[string]any, p Path) {
	if len(p) == 0 {
		return
	}
	if p[len(p)-1] == "." {
		p = p[:len(p)-1]
	}
	if len(p) == 0 {
		return
	}
	parent, ok := valueAt(obj, p[:len(p)-1])
	if !ok {
		return
	}
	last := p[len(p)-1]
	switch {
	case strings.HasPrefix(last, "f:"):
		if m, ok := parent.(map[string]any); ok {
			delete(m, last[2:])
		}
	case strings.HasPrefix(last, "k:"), strings.HasPrefix(last, "v:"):
		l, ok := parent.([]any)
		if !ok {
			return
		}
		var out []any
		for i, v := range l {
			if strings.HasPrefix(last, "k:") && i == findItem(l, last) {
				continue
			}
			if strings.HasPrefix(last, "v:") {
				var want any
				_ = json.Unmarshal([]byte(last[2:]), &want)
				if jsonEqual(v, want) {
					continue
				}
			}
			out = append(out, v)
		}
		setAt(obj, p[:len(p)-1], out)
	}
}

// setAt replaces the value at path p (which must exist) with v.
func setAt(obj map[string]any, p Path, v any) {
	parent, ok := valueAt(obj, p[:len(p)-1])
	if !ok {
		return
	}
	last := p[len(p)-1]
	switch {
	case strings.HasPrefix(last, "f:"):
		if m, ok := parent.(map[string]any); ok {
			m[last[2:]] = v
		}
	case strings.HasPrefix(last, "k:"):
		if l, ok := parent.([]any); ok {
			if i := findItem(l, last); i >= 0 {
				l[i] = v
			}
		}
	}
}

func fieldOf(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	if md == nil {
		return nil
	}
	if fd := md.Fields().ByJSONName(key); fd != nil {
		return fd
	}
	return md.Fields().ByName(protoreflect.Name(key))
}

func isOpaque(md protoreflect.MessageDescriptor) bool {
	return md.FullName() == schema.IntOrStringMessage || md.FullName() == schema.FieldsV1Message
}

func jsonEqual(a, b any) bool {
	// Scalars, most leaves, compare without encoding.
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case float64:
		y, ok := b.(float64)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ab) == string(bb)
}
