package informer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// IndexFunc computes the values an object is indexed under; an object may have none.
type IndexFunc func(obj scheme.Object) ([]string, error)

// Indexers names the indexes of a Store.
type Indexers map[string]IndexFunc

// NamespaceIndex indexes objects by namespace ("" for cluster-scoped kinds). Every informer
// has it.
const NamespaceIndex = "namespace"

// MetaNamespaceIndexFunc indexes an object by its namespace.
func MetaNamespaceIndexFunc(obj scheme.Object) ([]string, error) {
	return []string{obj.GetMetadata().GetNamespace()}, nil
}

// LabelIndexFunc indexes objects by the value of label key; objects without it are left out.
func LabelIndexFunc(key string) IndexFunc {
	return func(obj scheme.Object) ([]string, error) {
		if v, ok := obj.GetMetadata().GetLabels()[key]; ok {
			return []string{v}, nil
		}
		return nil, nil
	}
}

// FieldIndexFunc indexes objects by the scalar at a field path of JSON names, as field
// selectors spell it: "spec.nodeName", "status.phase", "metadata.name". An unset field
// indexes as its zero value ("" for strings), so that e.g. the pods not yet bound to a node
// are ByIndex(index, ""). A path that does not name a scalar of the kind is an error, which
// New reports at once.
func FieldIndexFunc(path string) IndexFunc {
	parts := strings.Split(path, ".")
	return func(obj scheme.Object) ([]string, error) {
		v, err := fieldValue(obj.ProtoReflect(), parts)
		if err != nil {
			return nil, fmt.Errorf("%w %q of %s: %v", errFieldPath, path, obj.ProtoReflect().Descriptor().Name(), err)
		}
		return []string{v}, nil
	}
}

// errFieldPath marks a FieldIndexFunc path the kind does not have. It depends on the kind
// only, never on the object, so New can find it with an empty object.
var errFieldPath = errors.New("bad field path")

// fieldValue resolves parts (JSON field names) to a scalar, walking through messages; an
// unset message reads as empty. Lists and maps have no single value, so they are refused.
// (The apiserver's field selectors resolve paths the same way.)
func fieldValue(m protoreflect.Message, parts []string) (string, error) {
	for i, p := range parts {
		fd := m.Descriptor().Fields().ByJSONName(p)
		switch {
		case fd == nil:
			return "", fmt.Errorf("no field %q", p)
		case fd.IsList() || fd.IsMap():
			return "", fmt.Errorf("%q is not a scalar", p)
		}
		last := i == len(parts)-1
		if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
			if last {
				return "", fmt.Errorf("%q is a message, not a scalar", p)
			}
			m = m.Get(fd).Message()
			continue
		}
		if !last {
			return "", fmt.Errorf("%q is a scalar and has no field %q", p, parts[i+1])
		}
		v := m.Get(fd)
		switch fd.Kind() {
		case protoreflect.StringKind:
			return v.String(), nil
		case protoreflect.BoolKind:
			return strconv.FormatBool(v.Bool()), nil
		case protoreflect.Int32Kind, protoreflect.Int64Kind, protoreflect.Sint32Kind, protoreflect.Sint64Kind,
			protoreflect.Sfixed32Kind, protoreflect.Sfixed64Kind:
			return strconv.FormatInt(v.Int(), 10), nil
		case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
			return strconv.FormatUint(v.Uint(), 10), nil
		case protoreflect.EnumKind:
			if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
				return string(ev.Name()), nil
			}
			return strconv.Itoa(int(v.Enum())), nil
		}
		return "", fmt.Errorf("%q has unsupported type %s", p, fd.Kind())
	}
	return "", fmt.Errorf("empty path")
}
