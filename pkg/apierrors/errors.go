// Package apierrors is the error model shared by the apiserver and its clients: every refusal
// is a Kubernetes-style Status carried as a gRPC status (with the Status as a detail) and, over
// REST, as the Status JSON with its HTTP code.
package apierrors

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// Reasons, as Kubernetes names them.
const (
	ReasonNotFound         = "NotFound"
	ReasonAlreadyExists    = "AlreadyExists"
	ReasonConflict         = "Conflict"
	ReasonInvalid          = "Invalid"
	ReasonBadRequest       = "BadRequest"
	ReasonGone             = "Gone"
	ReasonExpired          = "Expired"
	ReasonForbidden        = "Forbidden"
	ReasonUnauthorized     = "Unauthorized"
	ReasonMethodNotAllowed = "MethodNotAllowed"
	ReasonTooManyRequests  = "TooManyRequests"
	ReasonInternalError    = "InternalError"
	ReasonServiceUnavail   = "ServiceUnavailable"
	ReasonTimeout          = "Timeout"

	ReasonRequestEntityTooLarge = "RequestEntityTooLarge"
	ReasonUnsupportedMediaType  = "UnsupportedMediaType"
)

// StatusError is an error that carries a Kubernetes Status.
type StatusError struct {
	Status *metav1.Status
}

func (e *StatusError) Error() string { return e.Status.GetMessage() }

// GRPCStatus lets grpc-go send the error as a status with the Status attached as a detail.
func (e *StatusError) GRPCStatus() *status.Status {
	st := status.New(GRPCCode(e.Status), e.Status.GetMessage())
	if withDetails, err := st.WithDetails(e.Status); err == nil {
		return withDetails
	}
	return st
}

func newStatus(code int32, reason, message string, details *metav1.StatusDetails) *StatusError {
	return &StatusError{Status: &metav1.Status{
		ApiVersion: "v1", Kind: "Status", Status: "Failure",
		Code: code, Reason: reason, Message: message, Details: details,
	}}
}

// qualified renders "pods" or "deployments.apps" and the name as Kubernetes' messages do.
func qualified(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// NewNotFound: 404 `pods "web" not found`.
func NewNotFound(group, resource, name string) *StatusError {
	return newStatus(http.StatusNotFound, ReasonNotFound,
		fmt.Sprintf("%s %q not found", qualified(group, resource), name),
		&metav1.StatusDetails{Group: group, Kind: resource, Name: name})
}

// NewAlreadyExists: 409 `pods "web" already exists`.
func NewAlreadyExists(group, resource, name string) *StatusError {
	return newStatus(http.StatusConflict, ReasonAlreadyExists,
		fmt.Sprintf("%s %q already exists", qualified(group, resource), name),
		&metav1.StatusDetails{Group: group, Kind: resource, Name: name})
}

// NewConflict: 409 for a stale resourceVersion or a failed precondition.
func NewConflict(group, resource, name, why string) *StatusError {
	return newStatus(http.StatusConflict, ReasonConflict,
		fmt.Sprintf("Operation cannot be fulfilled on %s %q: %s", qualified(group, resource), name, why),
		&metav1.StatusDetails{Group: group, Kind: resource, Name: name})
}

// NewInvalid: 422 with one cause per offending field.
func NewInvalid(group, kind, name string, causes []*metav1.StatusCause) *StatusError {
	msg := fmt.Sprintf("%s %q is invalid", kind, name)
	if len(causes) > 0 {
		msg += ": "
		for i, c := range causes {
			if i > 0 {
				msg += ", "
			}
			if c.Field != "" {
				msg += c.Field + ": "
			}
			msg += c.Message
		}
	}
	return newStatus(http.StatusUnprocessableEntity, ReasonInvalid, msg,
		&metav1.StatusDetails{Group: group, Kind: kind, Name: name, Causes: causes})
}

// NewBadRequest: 400, for requests that cannot be understood (malformed body, bad selector).
func NewBadRequest(message string) *StatusError {
	return newStatus(http.StatusBadRequest, ReasonBadRequest, message, nil)
}

// NewBadRequestField: 400 naming the offending field or parameter.
func NewBadRequestField(field, message string) *StatusError {
	return newStatus(http.StatusBadRequest, ReasonBadRequest, message, &metav1.StatusDetails{
		Causes: []*metav1.StatusCause{{Reason: "FieldValueInvalid", Field: field, Message: message}},
	})
}

// NewGone: 410, for a resourceVersion or continue token older than what is kept.
func NewGone(message string) *StatusError {
	return newStatus(http.StatusGone, ReasonExpired, message, nil)
}

// NewForbidden: 403.
func NewForbidden(group, resource, name, why string) *StatusError {
	return newStatus(http.StatusForbidden, ReasonForbidden,
		fmt.Sprintf("%s %q is forbidden: %s", qualified(group, resource), name, why),
		&metav1.StatusDetails{Group: group, Kind: resource, Name: name})
}

// NewMethodNotSupported: 405.
func NewMethodNotSupported(group, resource, verb string) *StatusError {
	return newStatus(http.StatusMethodNotAllowed, ReasonMethodNotAllowed,
		fmt.Sprintf("%s is not supported on resources of kind %q", verb, qualified(group, resource)), nil)
}

// NewRequestEntityTooLarge: 413 `Request entity too large: limit is 3145728`, for a request
// body or an object above the size limits.
func NewRequestEntityTooLarge(message string) *StatusError {
	return newStatus(http.StatusRequestEntityTooLarge, ReasonRequestEntityTooLarge,
		"Request entity too large: "+message, nil)
}

// NewUnsupportedMediaType: 415, for a request body in a format the server does not read.
// accepted lists the media types it does read.
func NewUnsupportedMediaType(contentType string, accepted ...string) *StatusError {
	return newStatus(http.StatusUnsupportedMediaType, ReasonUnsupportedMediaType,
		fmt.Sprintf("the body of the request was in an unknown format (%q) - accepted media types include: %s",
			contentType, strings.Join(accepted, ", ")), nil)
}

// NewInternal: 500; the cause's text is kept in the message.
func NewInternal(err error) *StatusError {
	return newStatus(http.StatusInternalServerError, ReasonInternalError,
		fmt.Sprintf("Internal error occurred: %v", err), nil)
}

// NewServiceUnavailable: 503.
func NewServiceUnavailable(message string) *StatusError {
	return newStatus(http.StatusServiceUnavailable, ReasonServiceUnavail, message, nil)
}

// GRPCCode maps a Status to the matching gRPC code.
func GRPCCode(s *metav1.Status) codes.Code {
	switch s.GetCode() {
	case http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed:
		return codes.Unimplemented
	case http.StatusConflict:
		if s.GetReason() == ReasonAlreadyExists {
			return codes.AlreadyExists
		}
		return codes.Aborted
	case http.StatusGone:
		return codes.OutOfRange
	case http.StatusTooManyRequests, http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// httpCodes maps gRPC codes to HTTP for errors that carry no Status detail.
var httpCodes = map[codes.Code]int32{
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.Unauthenticated:    http.StatusUnauthorized,
	codes.PermissionDenied:   http.StatusForbidden,
	codes.NotFound:           http.StatusNotFound,
	codes.Unimplemented:      http.StatusNotImplemented,
	codes.AlreadyExists:      http.StatusConflict,
	codes.Aborted:            http.StatusConflict,
	codes.FailedPrecondition: http.StatusBadRequest,
	codes.OutOfRange:         http.StatusGone,
	codes.ResourceExhausted:  http.StatusTooManyRequests,
	codes.Unavailable:        http.StatusServiceUnavailable,
	codes.DeadlineExceeded:   http.StatusGatewayTimeout,
	codes.Canceled:           499,
}

// FromError recovers the Status from any error: a StatusError, a gRPC status with a Status
// detail, a plain gRPC status (mapped by code), or anything else (500).
func FromError(err error) *StatusError {
	if err == nil {
		return nil
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se
	}
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if s, ok := d.(*metav1.Status); ok {
				return &StatusError{Status: s}
			}
		}
		if isMessageTooLarge(st) {
			return NewRequestEntityTooLarge(st.Message())
		}
		code, ok := httpCodes[st.Code()]
		if !ok {
			code = http.StatusInternalServerError
		}
		return newStatus(code, reasonForHTTP(code), st.Message(), nil)
	}
	return NewInternal(err)
}

// isMessageTooLarge recognises grpc-go's refusal of a message above the receiver's
// MaxRecvMsgSize. grpc-go answers it before any handler runs, so it carries no Status detail;
// it is a 413, not the 429 other ResourceExhausted errors mean.
func isMessageTooLarge(st *status.Status) bool {
	return st.Code() == codes.ResourceExhausted && strings.HasPrefix(st.Message(), "grpc: ") &&
		strings.Contains(st.Message(), "larger than max")
}

func reasonForHTTP(code int32) string {
	switch code {
	case http.StatusBadRequest:
		return ReasonBadRequest
	case http.StatusUnauthorized:
		return ReasonUnauthorized
	case http.StatusForbidden:
		return ReasonForbidden
	case http.StatusNotFound:
		return ReasonNotFound
	case http.StatusConflict:
		return ReasonConflict
	case http.StatusGone:
		return ReasonExpired
	case http.StatusRequestEntityTooLarge:
		return ReasonRequestEntityTooLarge
	case http.StatusUnsupportedMediaType:
		return ReasonUnsupportedMediaType
	case http.StatusTooManyRequests:
		return ReasonTooManyRequests
	case http.StatusServiceUnavailable:
		return ReasonServiceUnavail
	case http.StatusGatewayTimeout:
		return ReasonTimeout
	}
	return ReasonInternalError
}

// ReasonOf returns the Status reason of err ("" when err is nil).
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	return FromError(err).Status.GetReason()
}

func IsNotFound(err error) bool      { return ReasonOf(err) == ReasonNotFound }
func IsAlreadyExists(err error) bool { return ReasonOf(err) == ReasonAlreadyExists }
func IsConflict(err error) bool      { return ReasonOf(err) == ReasonConflict }
func IsInvalid(err error) bool       { return ReasonOf(err) == ReasonInvalid }
func IsGone(err error) bool {
	r := ReasonOf(err)
	return r == ReasonGone || r == ReasonExpired
}

// HasStatusCause reports whether err's Status has a cause with this reason (for example
// CauseNamespaceTerminating), as client-go's HasStatusCause.
func HasStatusCause(err error, reason string) bool {
	if err == nil {
		return false
	}
	for _, c := range FromError(err).Status.GetDetails().GetCauses() {
		if c.GetReason() == reason {
			return true
		}
	}
	return false
}
