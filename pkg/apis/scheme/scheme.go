// Package scheme is the table of API kinds Skiff serves: for each kind its group, version,
// REST resource name, scope and Go type. The apiserver, the clients and the CLI all key on it,
// so adding a kind is a proto change plus one entry here.
package scheme

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/fields"
)

// Object is any top-level API object: it has apiVersion, kind and metadata.
type Object interface {
	proto.Message
	GetApiVersion() string
	GetKind() string
	GetMetadata() *metav1.ObjectMeta
}

// Kind describes one API kind.
type Kind struct {
	Group      string // "" for the core group, "apps", ...
	Version    string // "v1"
	Kind       string // "Pod"
	ListKind   string // "PodList"
	Resource   string // "pods": the REST path segment
	Singular   string // "pod"
	ShortNames []string
	Namespaced bool
	// HasStatus means the kind has a status subresource: Update ignores status changes and
	// UpdateStatus ignores everything else.
	HasStatus bool
	// Categories group resources for kubectl ("all": `kubectl get all`).
	Categories []string
	// Subresources beyond status (which HasStatus gives): binding, scale, log, exec, ...
	// Discovery lists them and the REST front routes them; adding one is one entry here.
	Subresources []Subresource
	// SelectableFields are the field paths field selectors may name, beyond metadata.name and
	// metadata.namespace which every kind has (Kubernetes' per-kind field label sets). Watch
	// filters, the bus and indexes rely on this set being small and fixed.
	SelectableFields []string

	newObject func() Object
	newList   func() proto.Message
	// Derived once by New, since clients and the server need them on every request.
	message protoreflect.FullName
	pkg     string
}

// Subresource is a subresource of a kind, as discovery lists it: its name, the kind its
// requests and answers carry (empty Group/Version: the parent's), and its verbs.
type Subresource struct {
	Name    string // "scale"
	Group   string // "autoscaling"; "" with Version "" means the parent's group and version
	Version string
	Kind    string // "Scale"
	Verbs   []string
}

// AllSubresources lists the kind's subresources, status first when the kind has one.
func (k *Kind) AllSubresources() []Subresource {
	var out []Subresource
	if k.HasStatus {
		out = append(out, Subresource{Name: "status", Kind: k.Kind, Verbs: []string{"get", "patch", "update"}})
	}
	return append(out, k.Subresources...)
}

// Subresource finds a subresource by name.
func (k *Kind) Subresource(name string) (Subresource, bool) {
	for _, s := range k.AllSubresources() {
		if s.Name == name {
			return s, true
		}
	}
	return Subresource{}, false
}

// Verbs are the verbs the kind's collection and objects take, as discovery lists them.
func (k *Kind) Verbs() []string {
	return []string{"create", "delete", "get", "list", "patch", "update", "watch"}
}

// APIVersion is "v1" for the core group and "group/version" otherwise.
func (k *Kind) APIVersion() string {
	if k.Group == "" {
		return k.Version
	}
	return k.Group + "/" + k.Version
}

// GroupResource is "pods" or "deployments.apps", as kubectl prints it.
func (k *Kind) GroupResource() string {
	if k.Group == "" {
		return k.Resource
	}
	return k.Resource + "." + k.Group
}

// New returns an empty object of this kind with apiVersion and kind set.
func (k *Kind) New() Object {
	obj := k.newObject()
	SetTypeMeta(obj, k.APIVersion(), k.Kind)
	return obj
}

// NewList returns an empty list of this kind.
func (k *Kind) NewList() proto.Message { return k.newList() }

// ProtoPackage is the protobuf package of the kind's messages and service, e.g. "skiff.core.v1".
func (k *Kind) ProtoPackage() string { return k.pkg }

// MessageName is the full protobuf name of the kind's message, e.g. "skiff.core.v1.Pod".
func (k *Kind) MessageName() protoreflect.FullName { return k.message }

// ServiceName is the full gRPC service name, e.g. "skiff.core.v1.PodAPI".
func (k *Kind) ServiceName() string { return k.ProtoPackage() + "." + k.Kind + "API" }

// Path is the REST path of the collection (name == "") or of one object, in namespace ns.
// An empty ns on a namespaced kind addresses all namespaces (lists only).
func (k *Kind) Path(ns, name string) string {
	var b strings.Builder
	if k.Group == "" {
		b.WriteString("/api/" + k.Version)
	} else {
		b.WriteString("/apis/" + k.Group + "/" + k.Version)
	}
	if k.Namespaced && ns != "" {
		b.WriteString("/namespaces/" + ns)
	}
	b.WriteString("/" + k.Resource)
	if name != "" {
		b.WriteString("/" + name)
	}
	return b.String()
}

// Scheme is an immutable set of kinds.
type Scheme struct {
	kinds []*Kind
	byGVK map[string]*Kind // "apps/v1/Deployment"
	names map[string]*Kind // resource, singular, short names, lower-case kind, "deployments.apps"
}

// New builds a scheme from kinds.
func New(kinds ...*Kind) *Scheme {
	s := &Scheme{byGVK: map[string]*Kind{}, names: map[string]*Kind{}}
	for _, k := range kinds {
		if k.ListKind == "" {
			k.ListKind = k.Kind + "List"
		}
		if k.Singular == "" {
			k.Singular = strings.ToLower(k.Kind)
		}
		desc := k.newObject().ProtoReflect().Descriptor()
		k.message, k.pkg = desc.FullName(), string(desc.ParentFile().Package())
		k.SelectableFields = append([]string{"metadata.name", "metadata.namespace"}, k.SelectableFields...)
		probe := k.newObject().ProtoReflect()
		for _, f := range k.SelectableFields {
			if _, err := fields.Value(probe, f); err != nil {
				panic(fmt.Sprintf("scheme: selectable field of %s: %v", k.Kind, err))
			}
		}
		s.kinds = append(s.kinds, k)
		s.byGVK[k.APIVersion()+"/"+k.Kind] = k
		names := append([]string{k.Resource, k.Singular, strings.ToLower(k.Kind), k.GroupResource()}, k.ShortNames...)
		if k.Group != "" {
			// "replicaset.apps", as `get -o name` prints it and kubectl accepts it.
			names = append(names, k.Singular+"."+k.Group)
		}
		for _, n := range names {
			s.names[n] = k
		}
	}
	return s
}

// IsSelectable reports whether field selectors may name path for this kind.
func (k *Kind) IsSelectable(path string) bool {
	return slices.Contains(k.SelectableFields, path)
}

// SelectableFieldSet returns the values of obj's selectable fields, for matching field
// selectors.
func (k *Kind) SelectableFieldSet(obj Object) fields.Fields {
	m := obj.ProtoReflect()
	set := make(fields.Fields, len(k.SelectableFields))
	for _, f := range k.SelectableFields {
		set[f], _ = fields.Value(m, f) // checked against the type by New
	}
	return set
}

// Kinds lists every kind in registration order.
func (s *Scheme) Kinds() []*Kind { return append([]*Kind(nil), s.kinds...) }

// ForObject finds the kind of an object by its apiVersion and kind fields.
func (s *Scheme) ForObject(obj Object) (*Kind, error) {
	return s.Lookup(obj.GetApiVersion(), obj.GetKind())
}

// Lookup finds a kind by apiVersion and kind.
func (s *Scheme) Lookup(apiVersion, kind string) (*Kind, error) {
	if k, ok := s.byGVK[apiVersion+"/"+kind]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("no kind %q is registered for version %q", kind, apiVersion)
}

// ForName finds a kind by any of the names kubectl accepts: "pods", "pod", "po", "Pod",
// "deployments.apps".
func (s *Scheme) ForName(name string) (*Kind, error) {
	if k, ok := s.names[strings.ToLower(name)]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("the server doesn't have a resource type %q", name)
}

// ForMessage finds the kind whose Go type is the same message type as m.
func (s *Scheme) ForMessage(m proto.Message) (*Kind, error) {
	name := m.ProtoReflect().Descriptor().FullName()
	for _, k := range s.kinds {
		if k.message == name {
			return k, nil
		}
	}
	return nil, fmt.Errorf("message %s is not a registered kind", name)
}

// ResourceNames lists the resource names, sorted, for help texts.
func (s *Scheme) ResourceNames() []string {
	var out []string
	for _, k := range s.kinds {
		out = append(out, k.Resource)
	}
	sort.Strings(out)
	return out
}

// scaleSubresource is autoscaling/v1 Scale: kubectl scale reads and patches it.
var scaleSubresource = Subresource{Name: "scale", Group: "autoscaling", Version: "v1", Kind: "Scale",
	Verbs: []string{"get", "patch", "update"}}

// Default is Skiff's built-in scheme.
func Default() *Scheme { return defaultScheme }

var defaultScheme = New(
	&Kind{Version: "v1", Kind: "Namespace", Resource: "namespaces", ShortNames: []string{"ns"}, HasStatus: true,
		SelectableFields: []string{"status.phase"},
		newObject:        func() Object { return &corev1.Namespace{} }, newList: func() proto.Message { return &corev1.NamespaceList{} }},
	&Kind{Version: "v1", Kind: "Node", Resource: "nodes", ShortNames: []string{"no"}, HasStatus: true,
		SelectableFields: []string{"spec.unschedulable"},
		newObject:        func() Object { return &corev1.Node{} }, newList: func() proto.Message { return &corev1.NodeList{} }},
	&Kind{Version: "v1", Kind: "Pod", Resource: "pods", ShortNames: []string{"po"}, Namespaced: true, HasStatus: true,
		Categories: []string{"all"}, Subresources: []Subresource{{Name: "binding", Kind: "Binding", Verbs: []string{"create"}}},
		SelectableFields: []string{"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
			"spec.hostNetwork", "status.phase", "status.podIP"},
		newObject: func() Object { return &corev1.Pod{} }, newList: func() proto.Message { return &corev1.PodList{} }},
	&Kind{Version: "v1", Kind: "Service", Resource: "services", ShortNames: []string{"svc"}, Namespaced: true, HasStatus: true,
		Categories:       []string{"all"},
		SelectableFields: []string{"spec.clusterIP", "spec.type"},
		newObject:        func() Object { return &corev1.Service{} }, newList: func() proto.Message { return &corev1.ServiceList{} }},
	&Kind{Version: "v1", Kind: "Endpoints", Resource: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"}, Namespaced: true,
		newObject: func() Object { return &corev1.Endpoints{} }, newList: func() proto.Message { return &corev1.EndpointsList{} }},
	&Kind{Version: "v1", Kind: "Event", Resource: "events", ShortNames: []string{"ev"}, Namespaced: true,
		SelectableFields: []string{"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
			"involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
			"reason", "reportingComponent", "type"},
		newObject: func() Object { return &corev1.Event{} }, newList: func() proto.Message { return &corev1.EventList{} }},
	&Kind{Group: "apps", Version: "v1", Kind: "ReplicaSet", Resource: "replicasets", ShortNames: []string{"rs"}, Namespaced: true, HasStatus: true,
		Categories: []string{"all"}, Subresources: []Subresource{scaleSubresource},
		SelectableFields: []string{"status.replicas"},
		newObject:        func() Object { return &appsv1.ReplicaSet{} }, newList: func() proto.Message { return &appsv1.ReplicaSetList{} }},
	&Kind{Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments", ShortNames: []string{"deploy"}, Namespaced: true, HasStatus: true,
		Categories: []string{"all"}, Subresources: []Subresource{scaleSubresource},
		newObject: func() Object { return &appsv1.Deployment{} }, newList: func() proto.Message { return &appsv1.DeploymentList{} }},
	&Kind{Group: "coordination.k8s.io", Version: "v1", Kind: "Lease", Resource: "leases", Namespaced: true,
		newObject: func() Object { return &coordinationv1.Lease{} }, newList: func() proto.Message { return &coordinationv1.LeaseList{} }},
)

// SetTypeMeta sets apiVersion and kind on any object.
func SetTypeMeta(obj Object, apiVersion, kind string) {
	m := obj.ProtoReflect()
	fields := m.Descriptor().Fields()
	m.Set(fields.ByName("api_version"), protoreflect.ValueOfString(apiVersion))
	m.Set(fields.ByName("kind"), protoreflect.ValueOfString(kind))
}

// Meta returns the object's metadata, creating it when absent so callers can write to it.
func Meta(obj Object) *metav1.ObjectMeta {
	if md := obj.GetMetadata(); md != nil {
		return md
	}
	m := obj.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("metadata")
	md := &metav1.ObjectMeta{}
	m.Set(fd, protoreflect.ValueOfMessage(md.ProtoReflect()))
	return md
}

// ListItems returns the items of a list message and its metadata.
func ListItems(list proto.Message) ([]Object, *metav1.ListMeta) {
	m := list.ProtoReflect()
	fields := m.Descriptor().Fields()
	items := m.Get(fields.ByName("items")).List()
	out := make([]Object, items.Len())
	for i := range out {
		out[i] = items.Get(i).Message().Interface().(Object)
	}
	var lm *metav1.ListMeta
	if m.Has(fields.ByName("metadata")) {
		lm = m.Get(fields.ByName("metadata")).Message().Interface().(*metav1.ListMeta)
	}
	return out, lm
}

// SetListItems fills a list message with items and list metadata.
func SetListItems(list proto.Message, k *Kind, items []Object, lm *metav1.ListMeta) {
	m := list.ProtoReflect()
	fields := m.Descriptor().Fields()
	m.Set(fields.ByName("api_version"), protoreflect.ValueOfString(k.APIVersion()))
	m.Set(fields.ByName("kind"), protoreflect.ValueOfString(k.ListKind))
	if lm != nil {
		m.Set(fields.ByName("metadata"), protoreflect.ValueOfMessage(lm.ProtoReflect()))
	}
	l := m.Mutable(fields.ByName("items")).List()
	for _, it := range items {
		l.Append(protoreflect.ValueOfMessage(it.ProtoReflect()))
	}
}
