// Package fields implements Kubernetes field selectors for Skiff ("spec.nodeName=node-1,
// status.phase!=Running"). Unlike label selectors they only support equality and inequality,
// because each resource exposes a small fixed set of selectable fields that the apiserver
// evaluates (and may index) itself; see Check and Selector.RequiresExactMatch.
package fields

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// Fields is the set of selectable field values of one object, keyed by field path, e.g.
// {"metadata.name": "web-0", "spec.nodeName": "node-1"}.
type Fields map[string]string

// Operator is a field selector operator.
type Operator string

const (
	// Equals requires the field to have the value. A field missing from Fields is treated
	// as the empty string, so "spec.nodeName=" selects unscheduled pods.
	Equals Operator = "="
	// DoubleEquals is the "==" spelling of Equals; Parse normalises it to Equals.
	DoubleEquals Operator = "=="
	// NotEquals requires the field to have a different value.
	NotEquals Operator = "!="
)

// Requirement is one "field op value" term of a selector; all terms must hold.
type Requirement struct {
	Field    string
	Operator Operator
	Value    string
}

// Matches reports whether the object's fields satisfy the requirement.
func (r Requirement) Matches(f Fields) bool {
	switch r.Operator {
	case Equals, DoubleEquals:
		return f[r.Field] == r.Value
	case NotEquals:
		return f[r.Field] != r.Value
	default:
		return false
	}
}

// String renders the term with its value escaped (see EscapeValue).
func (r Requirement) String() string {
	return r.Field + string(r.Operator) + EscapeValue(r.Value)
}

// Selector decides whether an object's fields match. Implementations are immutable.
type Selector interface {
	// Matches reports whether the fields satisfy every requirement.
	Matches(fields Fields) bool
	// Empty reports whether the selector has no requirements (matches everything).
	Empty() bool
	// String renders the selector in the syntax Parse accepts.
	String() string
	// Requirements returns a copy of the requirements, sorted by field.
	Requirements() []Requirement
	// RequiresExactMatch reports whether the selector pins field to a single value with
	// "=" or "==", and which. Storage uses it to answer, say, "spec.nodeName=node-1" from an
	// index instead of scanning every pod.
	RequiresExactMatch(field string) (value string, found bool)
}

// andSelector is a conjunction of requirements, sorted so String is canonical.
type andSelector []Requirement

func (s andSelector) Matches(f Fields) bool {
	for _, r := range s {
		if !r.Matches(f) {
			return false
		}
	}
	return true
}

func (s andSelector) Empty() bool { return len(s) == 0 }

func (s andSelector) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func (s andSelector) Requirements() []Requirement {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone([]Requirement(s))
}

func (s andSelector) RequiresExactMatch(field string) (string, bool) {
	for _, r := range s {
		if r.Field == field && (r.Operator == Equals || r.Operator == DoubleEquals) {
			return r.Value, true
		}
	}
	return "", false
}

func newAndSelector(reqs []Requirement) andSelector {
	s := make(andSelector, len(reqs))
	copy(s, reqs)
	// Sorted by the terms as written, as Kubernetes sorts them, so that String is the same
	// canonical form as Kubernetes' (test/clientgo checks it).
	sort.SliceStable(s, func(i, j int) bool { return s[i].String() < s[j].String() })
	return s
}

// Everything returns a selector that matches every object. Its String is "".
func Everything() Selector { return andSelector{} }

// SelectorFromSet returns a selector requiring field=value for every entry. A nil or empty
// set yields Everything.
func SelectorFromSet(set Fields) Selector {
	reqs := make([]Requirement, 0, len(set))
	for f, v := range set {
		reqs = append(reqs, Requirement{Field: f, Operator: Equals, Value: v})
	}
	return newAndSelector(reqs)
}

// OneTermEqualSelector returns the selector "field=value".
func OneTermEqualSelector(field, value string) Selector {
	return andSelector{{Field: field, Operator: Equals, Value: value}}
}

// OneTermNotEqualSelector returns the selector "field!=value".
func OneTermNotEqualSelector(field, value string) Selector {
	return andSelector{{Field: field, Operator: NotEquals, Value: value}}
}

// Parse parses a field selector: comma-separated terms "field=value", "field==value" or
// "field!=value". As in Kubernetes:
//   - values are taken verbatim, may be empty ("spec.nodeName="), and must escape '\', ','
//     and '=' with a backslash (see EscapeValue);
//   - empty terms are skipped, and "" is Everything.
//
// Unlike Kubernetes, whitespace around a field name is ignored ("a=b, c=d" works) and an
// empty field name is an error. Values are never trimmed, so they round-trip exactly.
// Whether the fields exist for a resource is not checked here; see Check.
func Parse(s string) (Selector, error) {
	var reqs []Requirement
	for _, term := range splitTerms(s) {
		if strings.TrimSpace(term) == "" {
			continue
		}
		field, op, rawValue, ok := splitTerm(term)
		if !ok {
			return nil, fmt.Errorf("invalid field selector %q: can't understand %q: expected field=value, field==value or field!=value", s, term)
		}
		field = strings.TrimSpace(field)
		if field == "" {
			return nil, fmt.Errorf("invalid field selector %q: term %q has an empty field name", s, term)
		}
		if strings.ContainsFunc(field, unicode.IsSpace) {
			return nil, fmt.Errorf("invalid field selector %q: field name %q contains whitespace", s, field)
		}
		value, err := UnescapeValue(rawValue)
		if err != nil {
			return nil, fmt.Errorf("invalid field selector %q: term %q: %w", s, term, err)
		}
		if op == DoubleEquals {
			op = Equals // one spelling, so String is canonical
		}
		reqs = append(reqs, Requirement{Field: field, Operator: op, Value: value})
	}
	return newAndSelector(reqs), nil
}

// splitTerms splits on commas that are not escaped by a backslash.
func splitTerms(s string) []string {
	if s == "" {
		return nil
	}
	var terms []string
	start := 0
	escaped := false
	for i := 0; i < len(s); i++ {
		switch {
		case escaped:
			escaped = false
		case s[i] == '\\':
			escaped = true
		case s[i] == ',':
			terms = append(terms, s[start:i])
			start = i + 1
		}
	}
	return append(terms, s[start:])
}

// splitTerm splits "field<op>value" at the first operator. At each position "!=" and "==" are
// tried before "=", so "a==b" is field "a" with "==", not field "a" with value "=b".
func splitTerm(term string) (field string, op Operator, value string, ok bool) {
	for i := 0; i < len(term); i++ {
		for _, candidate := range []Operator{NotEquals, DoubleEquals, Equals} {
			if strings.HasPrefix(term[i:], string(candidate)) {
				return term[:i], candidate, term[i+len(candidate):], true
			}
		}
	}
	return "", "", "", false
}

// EscapeValue escapes a value for use in a field selector string: '\' becomes '\\', ','
// becomes '\,' and '=' becomes '\='.
func EscapeValue(s string) string {
	if !strings.ContainsAny(s, `\,=`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == ',' || c == '=' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnescapeValue reverses EscapeValue. Unknown escape sequences, a trailing lone backslash and
// unescaped ',' or '=' are errors, as in Kubernetes, so that ambiguous input is refused.
func UnescapeValue(s string) (string, error) {
	if !strings.ContainsAny(s, `\,=`) {
		return s, nil
	}
	var b strings.Builder
	escaped := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escaped {
			if c != '\\' && c != ',' && c != '=' {
				return "", fmt.Errorf("invalid escape sequence %q in value %q", `\`+string(c), s)
			}
			b.WriteByte(c)
			escaped = false
			continue
		}
		switch c {
		case '\\':
			escaped = true
		case ',', '=':
			return "", fmt.Errorf("invalid character %q in value %q: ',' and '=' must be escaped with '\\'", c, s)
		default:
			b.WriteByte(c)
		}
	}
	if escaped {
		return "", fmt.Errorf("invalid escape sequence %q at the end of value %q", `\`, s)
	}
	return b.String(), nil
}

// Check returns an error naming every field of s that is not in allowed, e.g.
// "field label not supported: spec.foo". The apiserver calls it with the selectable fields
// of the resource being listed so that typos are refused instead of matching nothing.
func Check(s Selector, allowed []string) error {
	if s == nil {
		return nil
	}
	var errs []error
	seen := map[string]bool{}
	for _, r := range s.Requirements() {
		if !slices.Contains(allowed, r.Field) && !seen[r.Field] {
			seen[r.Field] = true
			errs = append(errs, fmt.Errorf("field label not supported: %s", r.Field))
		}
	}
	return errors.Join(errs...)
}
