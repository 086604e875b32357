package informer

import (
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/fields"
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
	return func(obj scheme.Object) ([]string, error) {
		v, err := fields.Value(obj.ProtoReflect(), path)
		if err != nil {
			return nil, err
		}
		return []string{v}, nil
	}
}
