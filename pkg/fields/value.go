package fields

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// ErrPath marks a path that names no scalar field of the message's type. It depends on the
// type only, never on the values, so checking a path against an empty message is enough.
var ErrPath = errors.New("bad field path")

// Value resolves a path of JSON field names ("spec.nodeName", "status.phase",
// "metadata.name") to the string form of the scalar it names, walking through messages. An
// unset message or scalar reads as its zero value ("" for strings), so that
// "spec.nodeName=" selects unscheduled pods. Lists and maps have no single value and are
// refused. This is the one implementation of field paths: the apiserver's field selectors,
// watch filters and the informer's field indexes all use it.
func Value(m protoreflect.Message, path string) (string, error) {
	if path == "" {
		return "", fmt.Errorf("%w: empty path", ErrPath)
	}
	rest := path
	for {
		p, more, _ := strings.Cut(rest, ".")
		fd := m.Descriptor().Fields().ByJSONName(p)
		switch {
		case fd == nil:
			return "", fmt.Errorf("%w %q: no field %q in %s", ErrPath, path, p, m.Descriptor().Name())
		case fd.IsList() || fd.IsMap():
			return "", fmt.Errorf("%w %q: %q is not a scalar", ErrPath, path, p)
		}
		isMessage := fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
		if isMessage {
			if more == "" {
				return "", fmt.Errorf("%w %q: %q is a message, not a scalar", ErrPath, path, p)
			}
			m = m.Get(fd).Message() // an unset message reads as empty
			rest = more
			continue
		}
		if more != "" {
			return "", fmt.Errorf("%w %q: %q is a scalar and has no field %q", ErrPath, path, p, more)
		}
		return scalarString(fd, m.Get(fd))
	}
}

func scalarString(fd protoreflect.FieldDescriptor, v protoreflect.Value) (string, error) {
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
	return "", fmt.Errorf("%w: %s has unsupported type %s", ErrPath, fd.Name(), fd.Kind())
}
