package resource

import (
	"fmt"
	"maps"
	"slices"
)

// ResourceList maps a resource name ("cpu", "memory", ...) to an amount. API objects carry
// these as map[string]string (e.g. a container's requests); ParseResourceList converts them.
type ResourceList map[string]Quantity

// ParseResourceList parses every value of m. The error names the offending resource, e.g.
// `resource "memory": invalid quantity "10MB": ...`. Keys are visited in sorted order so that
// the error is deterministic when several values are bad. A nil map yields a nil list.
func ParseResourceList(m map[string]string) (ResourceList, error) {
	if m == nil {
		return nil, nil
	}
	rl := make(ResourceList, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		q, err := ParseQuantity(m[name])
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", name, err)
		}
		rl[name] = q
	}
	return rl, nil
}

// StringMap renders the list back into the API's map[string]string form, using canonical
// quantity strings.
func (rl ResourceList) StringMap() map[string]string {
	if rl == nil {
		return nil
	}
	m := make(map[string]string, len(rl))
	for name, q := range rl {
		m[name] = q.String()
	}
	return m
}
