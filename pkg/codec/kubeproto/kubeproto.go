// Package kubeproto reads Kubernetes' protobuf encoding of API objects (the
// application/vnd.kubernetes.protobuf bodies that kubectl's and client-go's typed clients
// send) by transcoding it to Kubernetes' JSON, and gives the API's field descriptions from
// Kubernetes' own comments. Both come from the descriptors of k8s.io/api's generated.proto,
// embedded as kube.binpb.gz (hack/kube-descriptors.sh), so the module imports no k8s.io code.
package kubeproto

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// MediaType is Kubernetes' protobuf media type.
const MediaType = "application/vnd.kubernetes.protobuf"

// magic starts every Kubernetes protobuf body: "k8s" and a zero byte.
var magic = []byte{0x6b, 0x38, 0x73, 0x00}

//go:embed kube.binpb.gz
var compressed []byte

// registry is the descriptors, decoded once on first use and read-only afterwards.
var registry = sync.OnceValues(func() (*registryData, error) {
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return nil, fmt.Errorf("kubeproto: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("kubeproto: %w", err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("kubeproto: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("kubeproto: %w", err)
	}
	return &registryData{files: files, set: &set}, nil
})

type registryData struct {
	files *protoregistry.Files
	set   *descriptorpb.FileDescriptorSet
}

// packageOf maps an apiVersion's group to the proto package of its types.
func packageOf(group, version string) string {
	switch group {
	case "":
		return "k8s.io.api.core." + version
	case "meta.k8s.io":
		return "k8s.io.apimachinery.pkg.apis.meta." + version
	}
	return "k8s.io.api." + strings.Split(group, ".")[0] + "." + version
}

// ToJSON transcodes a Kubernetes protobuf body (magic, then a runtime.Unknown holding the
// type and the object's bytes) to the object's JSON.
func ToJSON(data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, magic) {
		return nil, errors.New("not a Kubernetes protobuf body: the k8s\\x00 prefix is missing")
	}
	reg, err := registry()
	if err != nil {
		return nil, err
	}
	unknownDesc, err := reg.files.FindDescriptorByName("k8s.io.apimachinery.pkg.runtime.Unknown")
	if err != nil {
		return nil, err
	}
	env := dynamicpb.NewMessage(unknownDesc.(protoreflect.MessageDescriptor))
	if err := proto.Unmarshal(data[len(magic):], env); err != nil {
		return nil, fmt.Errorf("decode the protobuf envelope: %w", err)
	}
	fields := env.Descriptor().Fields()
	tm := env.Get(fields.ByName("typeMeta")).Message()
	tmFields := tm.Descriptor().Fields()
	apiVersion := tm.Get(tmFields.ByName("apiVersion")).String()
	kind := tm.Get(tmFields.ByName("kind")).String()
	if kind == "" {
		return nil, errors.New("the protobuf body names no kind")
	}
	group, version, found := strings.Cut(apiVersion, "/")
	if !found {
		group, version = "", apiVersion
	}
	var md protoreflect.MessageDescriptor
	for _, pkg := range []string{packageOf(group, version), packageOf("meta.k8s.io", version)} {
		if d, err := reg.files.FindDescriptorByName(protoreflect.FullName(pkg + "." + kind)); err == nil {
			md, _ = d.(protoreflect.MessageDescriptor)
			break
		}
	}
	if md == nil {
		return nil, fmt.Errorf("no protobuf type is known for %s %s", apiVersion, kind)
	}
	obj := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(env.Get(fields.ByName("raw")).Bytes(), obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	v, err := messageValue(obj)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	m["apiVersion"], m["kind"] = apiVersion, kind
	return json.Marshal(m)
}

// inlined are the proto fields of Kubernetes' embedded structs, whose fields JSON inlines
// (json:"" in k8s.io/api's types).
var inlined = map[protoreflect.Name]bool{"handler": true, "volumeSource": true, "persistentVolumeSource": true,
	"localObjectReference": true, "ephemeralContainerCommon": true}

// messageValue converts a message to its JSON value, Kubernetes' special types included.
func messageValue(m protoreflect.Message) (any, error) {
	fields := m.Descriptor().Fields()
	get := func(name protoreflect.Name) protoreflect.Value { return m.Get(fields.ByName(name)) }
	switch m.Descriptor().FullName() {
	case "k8s.io.apimachinery.pkg.apis.meta.v1.Time", "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime":
		if get("seconds").Int() == 0 && get("nanos").Int() == 0 {
			return nil, nil // Kubernetes' zero time is null
		}
	}
	switch m.Descriptor().FullName() {
	case "k8s.io.apimachinery.pkg.apis.meta.v1.Time":
		return time.Unix(get("seconds").Int(), int64(get("nanos").Int())).UTC().Format(time.RFC3339), nil
	case "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime":
		return time.Unix(get("seconds").Int(), int64(get("nanos").Int())).UTC().Format("2006-01-02T15:04:05.000000Z07:00"), nil
	case "k8s.io.apimachinery.pkg.apis.meta.v1.Duration":
		return time.Duration(get("duration").Int()).String(), nil
	case "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
		if get("type").Int() == 1 {
			return get("strVal").String(), nil
		}
		return get("intVal").Int(), nil
	case "k8s.io.apimachinery.pkg.api.resource.Quantity":
		return get("string").String(), nil
	case "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1", "k8s.io.apimachinery.pkg.runtime.RawExtension":
		fd := fields.ByName("Raw")
		if fd == nil {
			fd = fields.ByName("raw")
		}
		raw := m.Get(fd).Bytes()
		if len(raw) == 0 {
			return map[string]any{}, nil
		}
		return json.RawMessage(raw), nil
	}
	out := map[string]any{}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		var val any
		switch {
		case fd.IsList():
			l := v.List()
			items := make([]any, l.Len())
			for i := range items {
				if items[i], err = singular(fd, l.Get(i)); err != nil {
					return false
				}
			}
			val = items
		case fd.IsMap():
			mv := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, ev protoreflect.Value) bool {
				mv[k.String()], err = singular(fd.MapValue(), ev)
				return err == nil
			})
			val = mv
		default:
			// Kubernetes' protobuf always carries its non-pointer fields; its JSON omits
			// them when empty, and so does this.
			if (fd.Kind() == protoreflect.StringKind && v.String() == "") || (fd.Kind() == protoreflect.BoolKind && !v.Bool()) {
				return true
			}
			val, err = singular(fd, v)
		}
		if err != nil {
			return false
		}
		if val == nil {
			return true
		}
		if inlined[fd.Name()] {
			// An embedded struct (Probe's ProbeHandler, Volume's VolumeSource, ...): its fields
			// are the parent's in JSON.
			if m, ok := val.(map[string]any); ok {
				for k, v := range m {
					out[k] = v
				}
				return true
			}
		}
		out[string(fd.Name())] = val
		return true
	})
	return out, err
}

func singular(fd protoreflect.FieldDescriptor, v protoreflect.Value) (any, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageValue(v.Message())
	case protoreflect.BytesKind:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	case protoreflect.StringKind:
		return v.String(), nil
	case protoreflect.BoolKind:
		return v.Bool(), nil
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return v.Float(), nil
	case protoreflect.Uint32Kind, protoreflect.Uint64Kind, protoreflect.Fixed32Kind, protoreflect.Fixed64Kind:
		return v.Uint(), nil
	case protoreflect.EnumKind:
		return int64(v.Enum()), nil
	}
	return v.Int(), nil
}

// Description is Kubernetes' description of a type (field "") or of one of its fields, by
// OpenAPI definition name (io.k8s.api.core.v1.Pod) and JSON field name; "" when unknown.
func Description(definition, field string) string {
	reg, err := registry()
	if err != nil {
		return ""
	}
	d, err := reg.files.FindDescriptorByName(protoreflect.FullName(protoName(definition)))
	if err != nil {
		return ""
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return ""
	}
	var desc protoreflect.Descriptor = md
	if field != "" {
		fd := md.Fields().ByName(protoreflect.Name(field))
		if fd == nil {
			return ""
		}
		desc = fd
	}
	loc := md.ParentFile().SourceLocations().ByDescriptor(desc)
	return cleanComment(loc.LeadingComments)
}

// cleanComment drops generator markers (+listType=map, +optional) and joins the lines.
func cleanComment(c string) string {
	var lines []string
	for _, l := range strings.Split(c, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "+") {
			continue
		}
		lines = append(lines, l)
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// KnownField reports whether Kubernetes' type definition (io.k8s.api.apps.v1.Deployment) has
// the field at path (spec.template.spec.containers[0].stdin): Skiff ignores fields
// Kubernetes has and Skiff does not model, where Kubernetes' strict decoding refuses only
// fields Kubernetes does not have.
func KnownField(definition, path string) bool {
	reg, err := registry()
	if err != nil {
		return false
	}
	d, err := reg.files.FindDescriptorByName(protoreflect.FullName(protoName(definition)))
	if err != nil {
		return false
	}
	md, ok := d.(protoreflect.MessageDescriptor)
	if !ok {
		return false
	}
	for _, name := range pathNames(path) {
		if md == nil {
			return false
		}
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return false
		}
		switch {
		case fd.IsMap():
			md = fd.MapValue().Message()
		default:
			md = fd.Message()
		}
	}
	return true
}

// protoName is the proto name of an OpenAPI definition name.
func protoName(definition string) string {
	full := strings.TrimPrefix(definition, "io.")
	full = strings.Replace(full, "k8s.api.", "k8s.io.api.", 1)
	return strings.Replace(full, "k8s.apimachinery.", "k8s.io.apimachinery.", 1)
}

// pathNames splits a JSON path into its field names, dropping list indexes and map keys.
func pathNames(path string) []string {
	var out []string
	var b strings.Builder
	depth := 0
	for _, c := range path {
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth > 0:
		case c == '.':
			if b.Len() > 0 {
				out = append(out, b.String())
				b.Reset()
			}
		default:
			b.WriteRune(c)
		}
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}
