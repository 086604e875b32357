// Package schema is the structure Kubernetes attaches to its API types beyond what the
// protobuf descriptors say: how each list merges (list type, keys, patch merge key and
// strategy), which strings are quantities, times or int-or-strings, and the Kubernetes
// names of the types (io.k8s.api.core.v1.Pod). The OpenAPI documents, strategic merge patch
// and server-side apply all read it, so they agree with each other and with Kubernetes.
package schema

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// ListType is how a list is identified and merged (x-kubernetes-list-type).
type ListType string

const (
	// Atomic lists are replaced as a whole.
	Atomic ListType = "atomic"
	// Map lists are keyed by ListInfo.Keys; items merge by key.
	Map ListType = "map"
	// Set lists hold distinct scalars; items merge by value.
	Set ListType = "set"
)

// ListInfo says how a repeated field merges.
type ListInfo struct {
	Type ListType
	// Keys identify the items of a Map list (x-kubernetes-list-map-keys).
	Keys []string
	// MergeKey is the strategic-merge-patch key (x-kubernetes-patch-merge-key): the field
	// that identifies an item; "" when the list has none.
	MergeKey string
	// Strategy is the strategic-merge-patch strategy (x-kubernetes-patch-strategy): "merge",
	// "merge,retainKeys" or "" (replace).
	Strategy string
}

// MergesByKey reports whether strategic merge patch merges the list's items by MergeKey.
func (l ListInfo) MergesByKey() bool {
	return strings.Contains(l.Strategy, "merge") && l.MergeKey != ""
}

// MergesByValue reports whether strategic merge patch merges a scalar list's items by value.
func (l ListInfo) MergesByValue() bool {
	return strings.Contains(l.Strategy, "merge") && l.MergeKey == ""
}

func mapList(mergeKey string, keys ...string) ListInfo {
	if len(keys) == 0 {
		keys = []string{mergeKey}
	}
	return ListInfo{Type: Map, Keys: keys, MergeKey: mergeKey, Strategy: "merge"}
}

// lists are Kubernetes' list markers (+listType, +listMapKey, +patchMergeKey,
// +patchStrategy) of the fields Skiff models. A repeated field not named here is atomic.
var lists = map[protoreflect.FullName]ListInfo{
	"skiff.meta.v1.ObjectMeta.finalizers":       {Type: Set, Strategy: "merge"},
	"skiff.meta.v1.ObjectMeta.owner_references": mapList("uid"),

	"skiff.core.v1.PodSpec.containers":      mapList("name"),
	"skiff.core.v1.PodSpec.init_containers": mapList("name"),
	"skiff.core.v1.PodSpec.volumes":         {Type: Map, Keys: []string{"name"}, MergeKey: "name", Strategy: "merge,retainKeys"},
	"skiff.core.v1.Container.ports":         mapList("containerPort", "containerPort", "protocol"),
	"skiff.core.v1.Container.env":           mapList("name"),
	"skiff.core.v1.Container.volume_mounts": mapList("mountPath"),
	"skiff.core.v1.PodStatus.conditions":    mapList("type"),
	"skiff.core.v1.PodStatus.pod_ips":       mapList("ip"),
	"skiff.core.v1.NodeSpec.pod_cidrs":      {Type: Set, Strategy: "merge"},
	"skiff.core.v1.NodeStatus.conditions":   mapList("type"),
	"skiff.core.v1.NodeStatus.addresses":    mapList("type"),
	"skiff.core.v1.ServiceSpec.ports":       mapList("port", "port", "protocol"),

	"skiff.apps.v1.DeploymentStatus.conditions": mapList("type"),
	"skiff.apps.v1.ReplicaSetStatus.conditions": mapList("type"),
}

// List returns how the repeated field fd merges.
func List(fd protoreflect.FieldDescriptor) ListInfo {
	if l, ok := lists[fd.FullName()]; ok {
		return l
	}
	return ListInfo{Type: Atomic}
}

// KeyDefaults are the defaults of list-map keys that manifests usually leave out, which
// Kubernetes' defaulting fills before items are compared: a port's protocol.
var KeyDefaults = map[string]any{"protocol": "TCP"}

// Names of the messages with a JSON form of their own.
const (
	IntOrStringMessage protoreflect.FullName = "skiff.meta.v1.IntOrString"
	FieldsV1Message    protoreflect.FullName = "skiff.meta.v1.FieldsV1"
)

// IsTime reports whether the string field fd holds a Kubernetes time (metav1.Time or
// MicroTime, RFC 3339): fields named *_timestamp and *_time, plus the few whose names do not
// say so.
func IsTime(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
		return false
	}
	name := string(fd.Name())
	switch name {
	case "started_at", "finished_at", "time_added":
		return true
	}
	if fd.FullName() == "skiff.meta.v1.ManagedFieldsEntry.time" {
		return true
	}
	return strings.HasSuffix(name, "_timestamp") || strings.HasSuffix(name, "_time")
}

// IsMicroTime reports whether a time field has microsecond precision (metav1.MicroTime).
func IsMicroTime(fd protoreflect.FieldDescriptor) bool {
	switch fd.FullName() {
	case "skiff.core.v1.Event.event_time", "skiff.coordination.v1.LeaseSpec.acquire_time",
		"skiff.coordination.v1.LeaseSpec.renew_time":
		return true
	}
	return false
}

// IsQuantityMap reports whether fd is a map whose values are resource quantities
// (Kubernetes' ResourceList).
func IsQuantityMap(fd protoreflect.FieldDescriptor) bool {
	if !fd.IsMap() || fd.MapValue().Kind() != protoreflect.StringKind {
		return false
	}
	switch fd.FullName() {
	case "skiff.core.v1.ResourceRequirements.limits", "skiff.core.v1.ResourceRequirements.requests",
		"skiff.core.v1.NodeStatus.capacity", "skiff.core.v1.NodeStatus.allocatable":
		return true
	}
	return false
}

// IsQuantity reports whether the singular string field fd is a resource quantity.
func IsQuantity(fd protoreflect.FieldDescriptor) bool {
	return fd.FullName() == "skiff.core.v1.EmptyDirVolumeSource.size_limit"
}

// Kubernetes' names of the special string types.
const (
	QuantityDefinition    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	IntOrStringDefinition = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	TimeDefinition        = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
	MicroTimeDefinition   = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
	FieldsV1Definition    = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
)

// packageNames maps Skiff's proto packages to Kubernetes' definition prefixes.
var packageNames = map[protoreflect.FullName]string{
	"skiff.meta.v1":         "io.k8s.apimachinery.pkg.apis.meta.v1",
	"skiff.core.v1":         "io.k8s.api.core.v1",
	"skiff.apps.v1":         "io.k8s.api.apps.v1",
	"skiff.coordination.v1": "io.k8s.api.coordination.v1",
}

// renamed are messages whose Kubernetes name differs from Skiff's.
var renamed = map[protoreflect.FullName]string{
	"skiff.core.v1.KeySelector": "io.k8s.api.core.v1.SecretKeySelector",
	IntOrStringMessage:          IntOrStringDefinition,
	FieldsV1Message:             FieldsV1Definition,
}

// DefinitionName is Kubernetes' OpenAPI name of message md: io.k8s.api.core.v1.Pod,
// io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta.
func DefinitionName(md protoreflect.MessageDescriptor) string {
	if n, ok := renamed[md.FullName()]; ok {
		return n
	}
	if p, ok := packageNames[md.ParentFile().Package()]; ok {
		return p + "." + string(md.Name())
	}
	return string(md.FullName())
}
