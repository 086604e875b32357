package codec

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Kubernetes types some string fields more narrowly than protobuf can: metav1.Time and
// MicroTime (RFC 3339 strings) and resource.Quantity (a string, or a JSON number on input).
// The API protos keep them as plain strings, so the codec recognises them here.

// isTimestampField reports whether fd holds a Kubernetes time: the fields named *_timestamp
// and *_time (creation_timestamp, last_transition_time, event_time, ...) plus the few whose
// names do not say so. TestTimestampFields lists every field this matches, so a new field
// that matches, or should, is noticed.
func isTimestampField(fd protoreflect.FieldDescriptor) bool {
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

// isQuantityMap reports whether fd is a map whose values are resource quantities
// (ResourceList in Kubernetes). TestQuantityMaps checks that each name still exists.
func isQuantityMap(fd protoreflect.FieldDescriptor) bool {
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
