// Package labels implements Kubernetes label selectors for Skiff: the string syntax accepted by
// list/watch calls ("app=web,tier in (fe,be),!canary"), the structured metav1.LabelSelector used
// inside objects, and the key/value validation rules the apiserver enforces on labels.
package labels

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Operator is a label selector operator. The string values are the ones Kubernetes uses in its
// selection package; the camel-cased names used in API objects ("In", "Gt", ...) are translated
// by FromLabelSelector and NodeSelectorRequirementsAsSelector.
type Operator string

const (
	// Equals requires the label to be present with exactly the (single) value.
	Equals Operator = "="
	// DoubleEquals is the "==" spelling of Equals. Parse normalises it to Equals so that
	// String is canonical; it is kept for requirements built by hand.
	DoubleEquals Operator = "=="
	// NotEquals requires the label to be absent or to have a different value.
	NotEquals Operator = "!="
	// In requires the label to be present with one of the values.
	In Operator = "in"
	// NotIn requires the label to be absent or to have none of the values.
	NotIn Operator = "notin"
	// Exists requires the label to be present, with any value.
	Exists Operator = "exists"
	// DoesNotExist requires the label to be absent.
	DoesNotExist Operator = "!"
	// GreaterThan requires the label to be present with an integer value greater than the
	// (single, integer) value. Written "key>N" in selector strings.
	GreaterThan Operator = "gt"
	// LessThan is GreaterThan's mirror. Written "key<N" in selector strings.
	LessThan Operator = "lt"
)

// Requirement is one clause of a selector, e.g. "tier in (fe,be)". All requirements of a
// selector must match (logical AND). Build it with NewRequirement to get validation; a
// Requirement assembled by hand that is invalid simply never matches where it cannot be
// evaluated (e.g. GreaterThan with a non-integer value).
type Requirement struct {
	Key      string
	Operator Operator
	Values   []string
}

// NewRequirement validates and returns a Requirement. The rules are Kubernetes':
//   - the key must be a qualified name (IsQualifiedName);
//   - In and NotIn need at least one value; Equals, DoubleEquals and NotEquals exactly one;
//     Exists and DoesNotExist none; GreaterThan and LessThan exactly one integer;
//   - every value must be a valid label value (IsValidLabelValue).
//
// Values of In/NotIn are sorted and de-duplicated (they are a set), and the slice is copied so
// the caller may reuse theirs.
func NewRequirement(key string, op Operator, vals []string) (Requirement, error) {
	if errs := IsQualifiedName(key); len(errs) != 0 {
		return Requirement{}, fmt.Errorf("invalid label key %q: %s", key, strings.Join(errs, "; "))
	}
	switch op {
	case In, NotIn:
		if len(vals) == 0 {
			return Requirement{}, fmt.Errorf("label key %q: for 'in', 'notin' operators, values set can't be empty", key)
		}
	case Equals, DoubleEquals, NotEquals:
		if len(vals) != 1 {
			return Requirement{}, fmt.Errorf("label key %q: exact-match compatibility requires one single value", key)
		}
	case Exists, DoesNotExist:
		if len(vals) != 0 {
			return Requirement{}, fmt.Errorf("label key %q: values set must be empty for exists and does not exist", key)
		}
	case GreaterThan, LessThan:
		if len(vals) != 1 {
			return Requirement{}, fmt.Errorf("label key %q: for 'gt', 'lt' operators, exactly one value is required", key)
		}
		if _, err := strconv.ParseInt(vals[0], 10, 64); err != nil {
			return Requirement{}, fmt.Errorf("label key %q: for 'gt', 'lt' operators, the value must be an integer, got %q", key, vals[0])
		}
	default:
		return Requirement{}, fmt.Errorf("label key %q: operator %q is not recognized", key, string(op))
	}
	for _, v := range vals {
		if errs := IsValidLabelValue(v); len(errs) != 0 {
			return Requirement{}, fmt.Errorf("invalid label value %q for key %q: %s", v, key, strings.Join(errs, "; "))
		}
	}
	var values []string
	if len(vals) > 0 {
		values = slices.Clone(vals)
	}
	if op == In || op == NotIn {
		slices.Sort(values)
		values = slices.Compact(values)
	}
	return Requirement{Key: key, Operator: op, Values: values}, nil
}

// Matches reports whether the label set satisfies the requirement. Following Kubernetes,
// NotEquals and NotIn match objects that do not carry the label at all.
func (r Requirement) Matches(labels map[string]string) bool {
	v, has := labels[r.Key]
	switch r.Operator {
	case Equals, DoubleEquals, In:
		return has && slices.Contains(r.Values, v)
	case NotEquals, NotIn:
		return !has || !slices.Contains(r.Values, v)
	case Exists:
		return has
	case DoesNotExist:
		return !has
	case GreaterThan, LessThan:
		if !has || len(r.Values) != 1 {
			return false
		}
		have, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return false
		}
		want, err := strconv.ParseInt(r.Values[0], 10, 64)
		if err != nil {
			return false
		}
		if r.Operator == GreaterThan {
			return have > want
		}
		return have < want
	default:
		return false
	}
}

// String renders the requirement in selector syntax, e.g. "tier in (be,fe)". Set values are
// printed sorted so that equal requirements render identically.
func (r Requirement) String() string {
	var b strings.Builder
	if r.Operator == DoesNotExist {
		b.WriteString("!")
	}
	b.WriteString(r.Key)
	switch r.Operator {
	case Equals:
		b.WriteString("=")
	case DoubleEquals:
		b.WriteString("==")
	case NotEquals:
		b.WriteString("!=")
	case In:
		b.WriteString(" in ")
	case NotIn:
		b.WriteString(" notin ")
	case GreaterThan:
		b.WriteString(">")
	case LessThan:
		b.WriteString("<")
	case Exists, DoesNotExist:
		return b.String()
	default:
		// Unknown operators cannot come out of NewRequirement or Parse; render something
		// that Parse rejects rather than something that silently means another thing.
		b.WriteString(" " + string(r.Operator) + " ")
	}
	switch r.Operator {
	case In, NotIn:
		vals := slices.Clone(r.Values)
		slices.Sort(vals)
		list := strings.Join(vals, ",")
		if list == "" {
			// The set of the empty value alone: "()" would be the empty set, which Parse refuses.
			list = ","
		}
		b.WriteString("(" + list + ")")
	default:
		b.WriteString(strings.Join(r.Values, ","))
	}
	return b.String()
}

// Selector decides whether a set of labels matches. Implementations are immutable and safe
// for concurrent use.
type Selector interface {
	// Matches reports whether the labels satisfy every requirement.
	Matches(labels map[string]string) bool
	// Empty reports whether the selector has no requirements (and so matches everything).
	Empty() bool
	// String renders the selector in the syntax Parse accepts (see Nothing for the one
	// exception).
	String() string
	// Requirements returns a copy of the selector's requirements, sorted by key.
	Requirements() []Requirement
}

// internalSelector is a conjunction of requirements kept sorted by key (then by rendering) so
// that String is canonical: two selectors meaning the same thing print the same.
type internalSelector []Requirement

func (s internalSelector) Matches(labels map[string]string) bool {
	for _, r := range s {
		if !r.Matches(labels) {
			return false
		}
	}
	return true
}

func (s internalSelector) Empty() bool { return len(s) == 0 }

func (s internalSelector) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func (s internalSelector) Requirements() []Requirement {
	if len(s) == 0 {
		return nil
	}
	out := make([]Requirement, len(s))
	for i, r := range s {
		r.Values = slices.Clone(r.Values)
		out[i] = r
	}
	return out
}

// newInternalSelector sorts a private copy of reqs into canonical order.
func newInternalSelector(reqs []Requirement) internalSelector {
	s := make(internalSelector, len(reqs))
	copy(s, reqs)
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].Key != s[j].Key {
			return s[i].Key < s[j].Key
		}
		return s[i].String() < s[j].String()
	})
	return s
}

// nothingSelector matches no object at all. It exists because a nil metav1.LabelSelector (and
// an empty node selector term list) must select nothing, which the selector syntax cannot say.
type nothingSelector struct{}

func (nothingSelector) Matches(map[string]string) bool { return false }
func (nothingSelector) Empty() bool                    { return false }
func (nothingSelector) Requirements() []Requirement    { return nil }

// String deliberately returns something Parse rejects. Kubernetes renders Nothing as "", which
// parses back to Everything; failing closed is safer than silently widening a selector.
func (nothingSelector) String() string { return "<nothing>" }

// Everything returns a selector that matches all label sets. Its String is "".
func Everything() Selector { return internalSelector{} }

// Nothing returns a selector that matches no label set. Its String ("<nothing>") is not
// accepted by Parse, so it cannot round-trip into Everything by accident.
func Nothing() Selector { return nothingSelector{} }

// NewSelector builds a selector from already validated requirements (see NewRequirement).
// It re-validates each one so that a hand-assembled Requirement cannot produce a selector
// whose String does not parse.
func NewSelector(reqs ...Requirement) (Selector, error) {
	valid := make([]Requirement, 0, len(reqs))
	for _, r := range reqs {
		vr, err := NewRequirement(r.Key, r.Operator, r.Values)
		if err != nil {
			return nil, err
		}
		valid = append(valid, vr)
	}
	return newInternalSelector(valid), nil
}

// SelectorFromSet returns a selector requiring every key=value of set (an exact match on all of
// them). A nil or empty set yields Everything. Like Kubernetes' SelectorFromSet the keys and
// values are not validated; use ValidatedSelectorFromSet for user input.
func SelectorFromSet(set map[string]string) Selector {
	if len(set) == 0 {
		return Everything()
	}
	reqs := make([]Requirement, 0, len(set))
	for k, v := range set {
		reqs = append(reqs, Requirement{Key: k, Operator: Equals, Values: []string{v}})
	}
	return newInternalSelector(reqs)
}

// ValidatedSelectorFromSet is SelectorFromSet with key and value validation.
func ValidatedSelectorFromSet(set map[string]string) (Selector, error) {
	if len(set) == 0 {
		return Everything(), nil
	}
	reqs := make([]Requirement, 0, len(set))
	// Sorted so that, with several bad entries, the error is always about the same one.
	for _, k := range slices.Sorted(maps.Keys(set)) {
		r, err := NewRequirement(k, Equals, []string{set[k]})
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, r)
	}
	return newInternalSelector(reqs), nil
}
