// Package patch applies Kubernetes' patch formats to the JSON form of an object: JSON patch
// (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch, whose list semantics
// (merge keys, merge strategies) come from pkg/apis/schema. It also computes the three-way
// merge of client-side apply (last applied, new manifest, live object), as kubectl does.
//
// Documents are JSON objects decoded with encoding/json (map[string]any, []any, float64,
// string, bool, nil).
package patch

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// Type is a patch's media type, as Kubernetes names them.
type Type string

const (
	JSONPatch           Type = "application/json-patch+json"
	MergePatch          Type = "application/merge-patch+json"
	StrategicMergePatch Type = "application/strategic-merge-patch+json"
	ApplyPatch          Type = "application/apply-patch+yaml"
)

// Types lists the patch types in the order Kubernetes lists them in errors and discovery.
var Types = []Type{JSONPatch, MergePatch, StrategicMergePatch, ApplyPatch}

// ErrInvalid wraps every error caused by the patch itself (a client's mistake: 400/422).
var ErrInvalid = errors.New("invalid patch")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ApplyJSON applies a JSON patch or merge patch to the JSON document doc.
func ApplyJSON(t Type, doc, patch []byte) ([]byte, error) {
	switch t {
	case JSONPatch:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, invalidf("%v", err)
		}
		out, err := p.Apply(doc)
		if err != nil {
			return nil, invalidf("%v", err)
		}
		return out, nil
	case MergePatch:
		if !isJSONObject(patch) {
			return nil, invalidf("a merge patch must be a JSON object")
		}
		out, err := jsonpatch.MergePatch(doc, patch)
		if err != nil {
			return nil, invalidf("%v", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("patch type %q is not a JSON patch or merge patch", t)
}

func isJSONObject(b []byte) bool {
	var m map[string]any
	return json.Unmarshal(b, &m) == nil && m != nil
}

// Directives of strategic merge patch.
const (
	directiveKey          = "$patch"
	retainKeysDirective   = "$retainKeys"
	setElementOrderPrefix = "$setElementOrder/"
	deleteFromPrimitive   = "$deleteFromPrimitiveList/"
)

// StrategicMergeJSON applies the strategic merge patch patch to doc, an object of message
// type md.
func StrategicMergeJSON(doc, patch []byte, md protoreflect.MessageDescriptor) ([]byte, error) {
	var original map[string]any
	if err := json.Unmarshal(doc, &original); err != nil {
		return nil, fmt.Errorf("decode object: %w", err)
	}
	var p map[string]any
	if err := json.Unmarshal(patch, &p); err != nil || p == nil {
		return nil, invalidf("a strategic merge patch must be a JSON object")
	}
	out, err := StrategicMerge(original, p, md)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// StrategicMerge applies patch to original (which it may modify) and returns the result.
func StrategicMerge(original, patch map[string]any, md protoreflect.MessageDescriptor) (map[string]any, error) {
	out, err := mergeMap(original, patch, md)
	if err != nil {
		return nil, err
	}
	if out == nil {
		return map[string]any{}, nil
	}
	return out, nil
}

// mergeMap merges patch into original as strategic merge patch does for an object of type md
// (nil: a map field, merged key by key). A nil result means the patch deleted the object.
func mergeMap(original, patch map[string]any, md protoreflect.MessageDescriptor) (map[string]any, error) {
	if original == nil {
		original = map[string]any{}
	}
	switch d := patch[directiveKey]; d {
	case nil:
	case "replace":
		return withoutDirectives(patch), nil
	case "delete":
		return nil, nil
	default:
		return nil, invalidf("unknown %s directive %v", directiveKey, d)
	}
	var retain []any
	if rk, ok := patch[retainKeysDirective]; ok {
		if retain, ok = rk.([]any); !ok {
			return nil, invalidf("%s must be a list", retainKeysDirective)
		}
	}
	for key, pv := range patch {
		switch {
		case key == directiveKey || key == retainKeysDirective:
			continue
		case len(key) > len(deleteFromPrimitive) && key[:len(deleteFromPrimitive)] == deleteFromPrimitive:
			field := key[len(deleteFromPrimitive):]
			values, ok := pv.([]any)
			if !ok {
				return nil, invalidf("%s must be a list", key)
			}
			if cur, ok := original[field].([]any); ok {
				original[field] = removeValues(cur, values)
			}
			continue
		case len(key) > len(setElementOrderPrefix) && key[:len(setElementOrderPrefix)] == setElementOrderPrefix:
			continue // applied after the lists are merged
		}
		if pv == nil {
			delete(original, key)
			continue
		}
		fd := fieldOf(md, key)
		merged, err := mergeValue(original[key], pv, fd)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if merged == nil {
			delete(original, key)
		} else {
			original[key] = merged
		}
	}
	for key, order := range patch {
		if len(key) <= len(setElementOrderPrefix) || key[:len(setElementOrderPrefix)] != setElementOrderPrefix {
			continue
		}
		field := key[len(setElementOrderPrefix):]
		orderList, ok := order.([]any)
		if !ok {
			return nil, invalidf("%s must be a list", key)
		}
		if cur, ok := original[field].([]any); ok {
			mergeKey := ""
			if fd := fieldOf(md, field); fd != nil {
				mergeKey = listInfo(fd).MergeKey
			}
			original[field] = reorder(cur, orderList, mergeKey)
		}
	}
	if retain != nil {
		keep := map[string]bool{}
		for _, k := range retain {
			if s, ok := k.(string); ok {
				keep[s] = true
			}
		}
		for k := range original {
			if !keep[k] {
				delete(original, k)
			}
		}
	}
	return original, nil
}

// mergeValue merges one patch value into the original value of field fd (nil when the
// field is unknown or the value sits in a map field's entries).
func mergeValue(orig, pv any, fd protoreflect.FieldDescriptor) (any, error) {
	switch p := pv.(type) {
	case map[string]any:
		o, _ := orig.(map[string]any)
		switch {
		case fd == nil:
			return mergeMap(o, p, nil)
		case fd.IsMap():
			return mergeMapField(o, p, fd)
		case fd.Message() != nil && !isOpaque(fd.Message()):
			return mergeMap(o, p, fd.Message())
		}
		return withoutDirectives(p), nil
	case []any:
		if fd == nil || !fd.IsList() {
			return p, nil
		}
		o, _ := orig.([]any)
		return mergeList(o, p, fd)
	}
	return pv, nil
}

// mergeMapField merges a map field (labels, resources.limits, ...) key by key.
func mergeMapField(orig, patch map[string]any, fd protoreflect.FieldDescriptor) (map[string]any, error) {
	if orig == nil {
		orig = map[string]any{}
	}
	if patch[directiveKey] == "replace" {
		return withoutDirectives(patch), nil
	}
	vfd := fd.MapValue()
	for k, v := range patch {
		if k == directiveKey {
			continue
		}
		if v == nil {
			delete(orig, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok && vfd.Message() != nil {
			om, _ := orig[k].(map[string]any)
			merged, err := mergeMap(om, pm, vfd.Message())
			if err != nil {
				return nil, err
			}
			orig[k] = merged
			continue
		}
		orig[k] = v
	}
	return orig, nil
}

// mergeList merges a patch list into a list field as the field's strategy says: by merge key
// (containers by name), by value (finalizers), or by replacing it.
func mergeList(orig, patch []any, fd protoreflect.FieldDescriptor) ([]any, error) {
	info := listInfo(fd)
	switch {
	case fd.Message() != nil && info.MergesByKey():
		return mergeListByKey(orig, patch, info.MergeKey, fd.Message())
	case fd.Message() == nil && info.MergesByValue():
		out := append([]any(nil), orig...)
		for _, v := range patch {
			if m, ok := v.(map[string]any); ok && m[directiveKey] == "replace" {
				return withoutReplaceMarker(patch), nil
			}
			if !containsValue(out, v) {
				out = append(out, v)
			}
		}
		return out, nil
	}
	return withoutReplaceMarker(patch), nil
}

func mergeListByKey(orig, patch []any, key string, md protoreflect.MessageDescriptor) ([]any, error) {
	for _, item := range patch {
		if m, ok := item.(map[string]any); ok && m[directiveKey] == "replace" && len(m) == 1 {
			// {"$patch": "replace"} as an item: the list is replaced by the other items.
			return stripItems(withoutReplaceMarker(patch)), nil
		}
	}
	out := append([]any(nil), orig...)
	for _, item := range patch {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, invalidf("the items of a list merged by %q must be objects", key)
		}
		kv, hasKey := m[key]
		if !hasKey {
			return nil, invalidf("map: %v does not contain declared merge key: %s", m, key)
		}
		idx := -1
		for i, o := range out {
			if om, ok := o.(map[string]any); ok && jsonEqual(om[key], kv) {
				idx = i
				break
			}
		}
		switch m[directiveKey] {
		case "delete":
			if idx >= 0 {
				out = append(out[:idx], out[idx+1:]...)
			}
			continue
		case "replace":
			if idx >= 0 {
				out[idx] = withoutDirectives(m)
			} else {
				out = append(out, withoutDirectives(m))
			}
			continue
		}
		if idx < 0 {
			merged, err := mergeMap(nil, m, md)
			if err != nil {
				return nil, err
			}
			out = append(out, merged)
			continue
		}
		om, _ := out[idx].(map[string]any)
		merged, err := mergeMap(om, m, md)
		if err != nil {
			return nil, err
		}
		out[idx] = merged
	}
	return out, nil
}

// reorder puts the items named in order first, in that order, keeping the others after them
// in their current order ($setElementOrder).
func reorder(items, order []any, mergeKey string) []any {
	id := func(v any) any {
		if m, ok := v.(map[string]any); ok && mergeKey != "" {
			return m[mergeKey]
		}
		return v
	}
	var out []any
	used := make([]bool, len(items))
	for _, o := range order {
		want := id(o)
		for i, it := range items {
			if !used[i] && jsonEqual(id(it), want) {
				out = append(out, it)
				used[i] = true
				break
			}
		}
	}
	for i, it := range items {
		if !used[i] {
			out = append(out, it)
		}
	}
	return out
}

func removeValues(list, values []any) []any {
	var out []any
	for _, v := range list {
		if !containsValue(values, v) {
			out = append(out, v)
		}
	}
	return out
}

func containsValue(list []any, v any) bool {
	for _, x := range list {
		if jsonEqual(x, v) {
			return true
		}
	}
	return false
}

func withoutReplaceMarker(list []any) []any {
	var out []any
	for _, v := range list {
		if m, ok := v.(map[string]any); ok && len(m) == 1 && m[directiveKey] == "replace" {
			continue
		}
		out = append(out, v)
	}
	return out
}

// withoutDirectives removes every directive from a patch value that becomes content.
func withoutDirectives(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k == directiveKey || k == retainKeysDirective || hasPrefix(k, setElementOrderPrefix) || hasPrefix(k, deleteFromPrimitive) {
			continue
		}
		out[k] = stripValue(v)
	}
	return out
}

func stripItems(list []any) []any {
	out := make([]any, len(list))
	for i, v := range list {
		out[i] = stripValue(v)
	}
	return out
}

func stripValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		return withoutDirectives(x)
	case []any:
		return stripItems(x)
	}
	return v
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// jsonEqual compares decoded JSON values.
func jsonEqual(a, b any) bool {
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ab) == string(bb)
}
