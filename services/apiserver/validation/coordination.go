package validation

import (
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
)

// ---- Lease ----

// validateLease checks a Lease as Kubernetes does: a positive duration and a non-negative
// transition count when given (the times are checked as RFC 3339 when the body is decoded).
func validateLease(l *coordinationv1.Lease) ErrorList {
	errs := validateObjectMeta(l.GetMetadata(), true, isDNS1123Subdomain, NewPath("metadata"))
	spec := l.GetSpec()
	sp := NewPath("spec")
	if d := spec.LeaseDurationSeconds; d != nil && *d <= 0 {
		errs = append(errs, Invalid(sp.Child("leaseDurationSeconds"), *d, "must be greater than 0"))
	}
	if n := spec.LeaseTransitions; n != nil {
		errs = append(errs, validateNonNegative(int64(*n), sp.Child("leaseTransitions"))...)
	}
	return errs
}
