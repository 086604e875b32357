package validation

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ErrorType is the machine-readable kind of a field error. Its value is the reason Kubernetes
// puts in a Status cause ("FieldValueInvalid", ...), so the apiserver can copy it verbatim.
type ErrorType string

// The error types, with Kubernetes' cause reasons as values.
const (
	ErrorTypeRequired     ErrorType = "FieldValueRequired"
	ErrorTypeInvalid      ErrorType = "FieldValueInvalid"
	ErrorTypeNotSupported ErrorType = "FieldValueNotSupported"
	ErrorTypeDuplicate    ErrorType = "FieldValueDuplicate"
	ErrorTypeForbidden    ErrorType = "FieldValueForbidden"
	ErrorTypeTooLong      ErrorType = "FieldValueTooLong"
	// ErrorTypeNotFound is used where Kubernetes uses it: a volumeMount naming no volume.
	ErrorTypeNotFound ErrorType = "FieldValueNotFound"
)

// String is the human phrase Kubernetes prints for the type ("Invalid value", ...).
func (t ErrorType) String() string {
	switch t {
	case ErrorTypeRequired:
		return "Required value"
	case ErrorTypeInvalid:
		return "Invalid value"
	case ErrorTypeNotSupported:
		return "Unsupported value"
	case ErrorTypeDuplicate:
		return "Duplicate value"
	case ErrorTypeForbidden:
		return "Forbidden"
	case ErrorTypeTooLong:
		return "Too long"
	case ErrorTypeNotFound:
		return "Not found"
	}
	return string(t)
}

// FieldError is one problem with one field of an object.
type FieldError struct {
	Type     ErrorType
	Field    string // the JSON path, e.g. "spec.containers[0].image"
	BadValue any
	Detail   string
}

// omitValue as a BadValue means the value is not worth printing (a whole list or struct);
// the message then reads "field: Invalid value: detail".
type omitValue struct{}

// Error renders the error as Kubernetes does, e.g.
// `metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must ...`.
func (e *FieldError) Error() string {
	return e.Field + ": " + e.ErrorBody()
}

// ErrorBody is the message without the field path (what a Status cause's message holds).
func (e *FieldError) ErrorBody() string {
	s := e.Type.String()
	switch e.Type {
	case ErrorTypeRequired, ErrorTypeForbidden, ErrorTypeTooLong:
		// Kubernetes never prints the value for these: it is absent or beside the point.
	default:
		if _, omit := e.BadValue.(omitValue); !omit {
			s += ": " + formatValue(e.BadValue)
		}
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// formatValue prints a bad value the way Kubernetes does: strings quoted, numbers and bools
// plain, nil pointers as null, and anything else through String or %#v.
func formatValue(v any) string {
	if v == nil {
		return "null"
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return "null"
		}
		if _, ok := v.(fmt.Stringer); !ok {
			v = rv.Elem().Interface()
		}
	}
	switch t := v.(type) {
	case string:
		return strconv.Quote(t)
	case int, int32, int64, uint32, uint64, float32, float64, bool:
		return fmt.Sprint(t)
	case fmt.Stringer:
		return t.String()
	}
	return fmt.Sprintf("%#v", v)
}

// ErrorList is every problem found in one object.
type ErrorList []*FieldError

// ToAggregate folds the list into one error, nil when the list is empty. The result unwraps
// to the individual *FieldError values (errors.As works on it).
func (l ErrorList) ToAggregate() error {
	if len(l) == 0 {
		return nil
	}
	return aggregate(l)
}

type aggregate []*FieldError

// Error prints one error bare and several as "[a, b]", as Kubernetes' aggregate does.
func (a aggregate) Error() string {
	if len(a) == 1 {
		return a[0].Error()
	}
	msgs := make([]string, len(a))
	for i, e := range a {
		msgs[i] = e.Error()
	}
	return "[" + strings.Join(msgs, ", ") + "]"
}

func (a aggregate) Unwrap() []error {
	out := make([]error, len(a))
	for i, e := range a {
		out[i] = e
	}
	return out
}

// Path is a field path, built from the root down and rendered as JSON-ish text:
// spec.containers[0].image, spec.nodeSelector[kubernetes.io/os].
type Path struct {
	name   string // a field name; empty for index and key steps
	index  string // "0" or a map key; set for index and key steps
	parent *Path
}

// NewPath starts a path at a top-level field, with optional further children.
func NewPath(name string, more ...string) *Path {
	p := &Path{name: name}
	for _, m := range more {
		p = &Path{name: m, parent: p}
	}
	return p
}

// Child appends one or more field names.
func (p *Path) Child(name string, more ...string) *Path {
	c := NewPath(name, more...)
	c.root().parent = p
	return c
}

// Index appends a list index: [3].
func (p *Path) Index(i int) *Path {
	return &Path{index: strconv.Itoa(i), parent: p}
}

// Key appends a map key: [key].
func (p *Path) Key(k string) *Path {
	return &Path{index: k, parent: p}
}

func (p *Path) root() *Path {
	for p.parent != nil {
		p = p.parent
	}
	return p
}

// String renders the path; a nil path renders as "<nil>".
func (p *Path) String() string {
	if p == nil {
		return "<nil>"
	}
	var steps []*Path
	for q := p; q != nil; q = q.parent {
		steps = append(steps, q)
	}
	var b strings.Builder
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		if s.name != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.name)
		} else {
			b.WriteString("[" + s.index + "]")
		}
	}
	return b.String()
}

// Required: a required field is empty. Detail may be "".
func Required(p *Path, detail string) *FieldError {
	return &FieldError{Type: ErrorTypeRequired, Field: p.String(), Detail: detail}
}

// Invalid: the value is malformed or out of range.
func Invalid(p *Path, value any, detail string) *FieldError {
	return &FieldError{Type: ErrorTypeInvalid, Field: p.String(), BadValue: value, Detail: detail}
}

// NotSupported: the value is not one of a fixed set; valid lists the set.
func NotSupported(p *Path, value any, valid []string) *FieldError {
	detail := ""
	if len(valid) > 0 {
		quoted := make([]string, len(valid))
		for i, v := range valid {
			quoted[i] = strconv.Quote(v)
		}
		detail = "supported values: " + strings.Join(quoted, ", ")
	}
	return &FieldError{Type: ErrorTypeNotSupported, Field: p.String(), BadValue: value, Detail: detail}
}

// Duplicate: the value repeats one that must be unique.
func Duplicate(p *Path, value any) *FieldError {
	return &FieldError{Type: ErrorTypeDuplicate, Field: p.String(), BadValue: value}
}

// Forbidden: the field may not be set (or changed) here.
func Forbidden(p *Path, detail string) *FieldError {
	return &FieldError{Type: ErrorTypeForbidden, Field: p.String(), Detail: detail}
}

// TooLong: the value exceeds maxLength bytes (a negative maxLength means "unknown limit").
func TooLong(p *Path, value any, maxLength int) *FieldError {
	detail := "value is too long"
	if maxLength >= 0 {
		unit := "bytes"
		if maxLength == 1 {
			unit = "byte"
		}
		detail = fmt.Sprintf("may not be more than %d %s", maxLength, unit)
	}
	return &FieldError{Type: ErrorTypeTooLong, Field: p.String(), BadValue: value, Detail: detail}
}

// NotFound: the value refers to something that does not exist (a volume name, ...).
func NotFound(p *Path, value any) *FieldError {
	return &FieldError{Type: ErrorTypeNotFound, Field: p.String(), BadValue: value}
}
