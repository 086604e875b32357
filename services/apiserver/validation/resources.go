package validation

import (
	"sort"
	"strings"

	"github.com/skiff-project/skiff/pkg/apis/resource"
	"github.com/skiff-project/skiff/pkg/labels"
)

// standardContainerResources are the unprefixed resource names a container may ask for;
// anything else needs a domain ("example.com/gpu"), as in Kubernetes.
var standardContainerResources = []string{"cpu", "memory", "ephemeral-storage"}

func isStandardContainerResource(name string) bool {
	if strings.HasPrefix(name, "hugepages-") {
		return true
	}
	for _, r := range standardContainerResources {
		if name == r {
			return true
		}
	}
	return false
}

// validateResourceName checks a resource-list key: a qualified name, and for containers
// either a standard resource or a domain-prefixed extended one.
func validateResourceName(name string, forContainer bool, path *Path) ErrorList {
	var errs ErrorList
	for _, msg := range labels.IsQualifiedName(name) {
		errs = append(errs, Invalid(path, name, msg))
	}
	if len(errs) == 0 && forContainer && !strings.Contains(name, "/") && !isStandardContainerResource(name) {
		errs = append(errs, Invalid(path, name, "must be a standard resource for containers"))
	}
	return errs
}

// parseQuantities checks every entry of a resource list (key syntax, quantity syntax,
// non-negative) and returns the parsed quantities of the good entries. Errors name the entry:
// spec.containers[0].resources.limits[memory].
func parseQuantities(list map[string]string, forContainer bool, path *Path) (map[string]resource.Quantity, ErrorList) {
	var errs ErrorList
	out := make(map[string]resource.Quantity, len(list))
	for _, name := range sortedKeys(list) {
		p := path.Key(name)
		if e := validateResourceName(name, forContainer, p); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		q, e := parseQuantity(list[name], p)
		if len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		out[name] = q
	}
	return out, errs
}

// parseQuantity parses a quantity that must not be negative.
func parseQuantity(s string, path *Path) (resource.Quantity, ErrorList) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return q, ErrorList{Invalid(path, s, "must be a valid quantity (e.g. \"500m\", \"128Mi\", \"2\"): "+err.Error())}
	}
	if q.IsNegative() {
		return q, ErrorList{Invalid(path, s, nonNegativeMsg)}
	}
	return q, nil
}

func validateQuantity(s string, path *Path) ErrorList {
	_, errs := parseQuantity(s, path)
	return errs
}

// validateResourceList checks a resource list such as a node's capacity.
func validateResourceList(list map[string]string, path *Path) ErrorList {
	_, errs := parseQuantities(list, false, path)
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
