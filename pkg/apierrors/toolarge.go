package apierrors

import (
	"fmt"
	"net/http"

	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// Reasons and cause types of the errors in this file, as Kubernetes names them.
const (
	// CauseResourceVersionTooLarge marks a 504 for a resourceVersion the server has not reached.
	CauseResourceVersionTooLarge = "ResourceVersionTooLarge"
	// CauseNamespaceTerminating marks a 403 for a create in a namespace being deleted.
	CauseNamespaceTerminating = "NamespaceTerminating"
)

// NewTimeout: 504; the client may retry after retryAfterSeconds.
func NewTimeout(message string, retryAfterSeconds int32) *StatusError {
	return newStatus(http.StatusGatewayTimeout, ReasonTimeout, "Timeout: "+message,
		&metav1.StatusDetails{RetryAfterSeconds: retryAfterSeconds})
}

// NewTooLargeResourceVersion: 504 for a read at a resourceVersion newer than the server's
// current one (it may exist soon; retry after a second), as Kubernetes answers it.
func NewTooLargeResourceVersion(requested, current int64) *StatusError {
	se := NewTimeout(fmt.Sprintf("Too large resource version: %d, current: %d", requested, current), 1)
	se.Status.Details.Causes = []*metav1.StatusCause{{Reason: CauseResourceVersionTooLarge, Message: "Too large resource version"}}
	return se
}

// IsTooLargeResourceVersion reports whether err is a NewTooLargeResourceVersion error.
func IsTooLargeResourceVersion(err error) bool {
	if err == nil {
		return false
	}
	for _, c := range FromError(err).Status.GetDetails().GetCauses() {
		if c.GetReason() == CauseResourceVersionTooLarge {
			return true
		}
	}
	return false
}

// NewNamespaceTerminating: 403 for a create in a namespace that is being deleted, with the
// NamespaceTerminating cause Kubernetes clients look for.
func NewNamespaceTerminating(group, resource, name, namespace string) *StatusError {
	se := NewForbidden(group, resource, name,
		fmt.Sprintf("unable to create new content in namespace %s because it is being terminated", namespace))
	se.Status.Details.Causes = append(se.Status.Details.Causes, &metav1.StatusCause{Reason: CauseNamespaceTerminating,
		Message: fmt.Sprintf("namespace %s is being terminated", namespace), Field: "metadata.namespace"})
	return se
}
