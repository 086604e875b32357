package codec

import (
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/schema"
)

// Kubernetes types some string fields more narrowly than protobuf can: metav1.Time and
// MicroTime (RFC 3339 strings) and resource.Quantity (a string, or a JSON number on input).
// The API protos keep them as plain strings; pkg/apis/schema says which they are.

// isTimestampField reports whether fd holds a Kubernetes time. TestTimestampFields lists every
// field this matches, so a new field that matches, or should, is noticed.
func isTimestampField(fd protoreflect.FieldDescriptor) bool { return schema.IsTime(fd) }

// isQuantityMap reports whether fd is a map whose values are resource quantities
// (ResourceList in Kubernetes). TestQuantityMaps checks that each name still exists.
func isQuantityMap(fd protoreflect.FieldDescriptor) bool { return schema.IsQuantityMap(fd) }
