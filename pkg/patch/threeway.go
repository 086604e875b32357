package patch

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/schema"
)

// ThreeWay is client-side apply's merge, as kubectl computes it: the fields of original (the
// configuration applied last time) that modified (the new configuration) no longer has are
// removed from current (the live object), and modified's fields are merged into it, lists
// merging by their merge keys. Fields that only current has (set by the server or by other
// writers) are kept. current may be modified; the result is returned.
func ThreeWay(original, modified, current map[string]any, md protoreflect.MessageDescriptor) map[string]any {
	return merge3(original, modified, current, md)
}

func merge3(original, modified, current map[string]any, md protoreflect.MessageDescriptor) map[string]any {
	if current == nil {
		current = map[string]any{}
	}
	for k := range original {
		if _, kept := modified[k]; !kept {
			delete(current, k)
		}
	}
	for k, mv := range modified {
		fd := fieldOf(md, k)
		ov, cv := original[k], current[k]
		switch m := mv.(type) {
		case map[string]any:
			cm, ok := cv.(map[string]any)
			if !ok || (fd != nil && !fd.IsMap() && (fd.Message() == nil || isOpaque(fd.Message()))) {
				current[k] = m
				continue
			}
			om, _ := ov.(map[string]any)
			var sub protoreflect.MessageDescriptor
			if fd != nil && !fd.IsMap() {
				sub = fd.Message()
			}
			current[k] = merge3(om, m, cm, sub)
		case []any:
			if fd == nil || !fd.IsList() {
				current[k] = m
				continue
			}
			ol, _ := ov.([]any)
			cl, _ := cv.([]any)
			info := listInfo(fd)
			switch {
			case fd.Message() != nil && info.MergesByKey():
				current[k] = merge3ListByKey(ol, m, cl, info.MergeKey, fd.Message())
			case fd.Message() == nil && info.MergesByValue():
				out := removeValues(cl, removeValues(ol, m))
				for _, v := range m {
					if !containsValue(out, v) {
						out = append(out, v)
					}
				}
				current[k] = out
			default:
				current[k] = m
			}
		default:
			current[k] = mv
		}
	}
	return current
}

func merge3ListByKey(original, modified, current []any, key string, md protoreflect.MessageDescriptor) []any {
	keyOf := func(v any) any {
		if m, ok := v.(map[string]any); ok {
			return m[key]
		}
		return nil
	}
	find := func(list []any, k any) (map[string]any, int) {
		for i, v := range list {
			if m, ok := v.(map[string]any); ok && jsonEqual(m[key], k) {
				return m, i
			}
		}
		return nil, -1
	}
	var out []any
	for _, c := range current {
		k := keyOf(c)
		_, inOrig := find(original, k)
		_, inMod := find(modified, k)
		if inOrig >= 0 && inMod < 0 {
			continue // removed from the configuration
		}
		out = append(out, c)
	}
	for _, mv := range modified {
		mm, ok := mv.(map[string]any)
		if !ok {
			continue
		}
		k := mm[key]
		om, _ := find(original, k)
		cm, idx := find(out, k)
		if idx < 0 {
			out = append(out, merge3(om, mm, nil, md))
			continue
		}
		out[idx] = merge3(om, mm, cm, md)
	}
	return reorder(out, modified, key)
}

// fieldOf finds the field of md with JSON name key (nil when md is nil or has no such field).
func fieldOf(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	if md == nil {
		return nil
	}
	if fd := md.Fields().ByJSONName(key); fd != nil {
		return fd
	}
	return md.Fields().ByName(protoreflect.Name(key))
}

func listInfo(fd protoreflect.FieldDescriptor) schema.ListInfo { return schema.List(fd) }

// isOpaque reports whether a message has a JSON form of its own (a number or string, a raw
// object) and so is replaced, never merged.
func isOpaque(md protoreflect.MessageDescriptor) bool {
	return md.FullName() == schema.IntOrStringMessage || md.FullName() == schema.FieldsV1Message
}
