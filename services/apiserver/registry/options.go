package registry

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// metaGroup is the API group Kubernetes names request options under in errors
// ("ListOptions.meta.k8s.io").
const metaGroup = "meta.k8s.io"

// dryRunAll is the one dry-run value Kubernetes defines.
const dryRunAll = "All"

// WriteOptions are the knobs of a create, update, status update or bind.
type WriteOptions struct {
	// DryRun runs defaulting, admission, validation and every storage check, stores nothing
	// and answers with the object as it would have been stored.
	DryRun bool
	// FieldManager names the writer in metadata.managedFields ("unknown" when empty).
	FieldManager string

	// managedFieldsSet means the caller (server-side apply) has already set the object's
	// managed fields, so the write must not track them again.
	managedFieldsSet bool
}

// Kinds of request options, as Kubernetes names them in errors about them.
const (
	CreateOptionsKind = "CreateOptions"
	UpdateOptionsKind = "UpdateOptions"
	DeleteOptionsKind = "DeleteOptions"
)

// ParseDryRun reads a request's dryRun values: none is a real write, ["All"] a dry run, and
// anything else is refused as Kubernetes refuses it: 422, "CreateOptions "" is invalid:
// dryRun: Unsupported value: "Maybe": supported values: "All"" (optionsKind names the
// options). REST and gRPC callers get the same answer; the REST front leaves values to this.
func ParseDryRun(optionsKind string, values []string) (bool, error) {
	for _, v := range values {
		if v != dryRunAll {
			return false, unsupportedOption(optionsKind, "dryRun", v, dryRunAll)
		}
	}
	return len(values) > 0, nil
}

// unsupportedOption is the 422 for an option value outside its set.
func unsupportedOption(optionsKind, field, value string, supported ...string) error {
	quoted := make([]string, len(supported))
	for i, s := range supported {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	return apierrors.NewInvalid(metaGroup, optionsKind, "", []*metav1.StatusCause{{Reason: "FieldValueNotSupported",
		Field: field, Message: fmt.Sprintf("Unsupported value: %q: supported values: %s", value, strings.Join(quoted, ", "))}})
}

// GetOptions are the knobs of a get.
type GetOptions struct {
	// ResourceVersion: "" reads the latest state (a quorum read), "0" any state (possibly
	// stale), N a state at least as new as N.
	ResourceVersion string
}

// Resource version match values of a list.
const (
	MatchNotOlderThan = "NotOlderThan"
	MatchExact        = "Exact"
)

// ListOptions select and page a list.
type ListOptions struct {
	LabelSelector string
	FieldSelector string
	Limit         int64  // 0: no limit
	Continue      string // the token of the previous page
	// ResourceVersion and ResourceVersionMatch choose the state listed, as in Kubernetes: ""
	// is the latest (quorum read), "0" any, N with NotOlderThan (the default) at least N, N
	// with Exact the state at revision N.
	ResourceVersion      string
	ResourceVersionMatch string
	// SendInitialEvents belongs to watches; a list refuses it, as Kubernetes does.
	SendInitialEvents *bool
}

// Propagation policies of a delete.
const (
	PropagationOrphan     = "Orphan"
	PropagationBackground = "Background"
	PropagationForeground = "Foreground"
)

// Preconditions make a delete conditional on the object's identity or version.
type Preconditions struct {
	UID             string
	ResourceVersion string
}

// DeleteOptions are the knobs of a delete (Kubernetes' DeleteOptions).
type DeleteOptions struct {
	// GracePeriodSeconds overrides a bound, running pod's grace period (0 deletes at once);
	// other objects have none and go at once. A negative value means 1, as in Kubernetes.
	GracePeriodSeconds *int64
	Preconditions      Preconditions
	// PropagationPolicy (Orphan, Background, Foreground) and OrphanDependents say how the
	// garbage collector treats dependents; the delete records them in the object's
	// finalizers (see gc.go).
	PropagationPolicy string
	OrphanDependents  *bool
	DryRun            bool
}

// DeleteOptionsFrom combines a DELETE's query parameters with its body, as Kubernetes does:
// the body wins where both say something, and dryRun values are combined.
func DeleteOptionsFrom(query DeleteOptions, queryDryRun []string, body *metav1.DeleteOptions) (DeleteOptions, error) {
	opts := query
	dryRun := append([]string(nil), queryDryRun...)
	if body != nil {
		if body.GracePeriodSeconds != nil {
			opts.GracePeriodSeconds = body.GracePeriodSeconds
		}
		if p := body.GetPreconditions(); p != nil {
			if p.GetUid() != "" {
				opts.Preconditions.UID = p.GetUid()
			}
			if p.GetResourceVersion() != "" {
				opts.Preconditions.ResourceVersion = p.GetResourceVersion()
			}
		}
		if body.GetPropagationPolicy() != "" {
			opts.PropagationPolicy = body.GetPropagationPolicy()
		}
		if body.OrphanDependents != nil {
			opts.OrphanDependents = body.OrphanDependents
		}
		dryRun = append(dryRun, body.GetDryRun()...)
	}
	dry, err := ParseDryRun(DeleteOptionsKind, dryRun)
	if err != nil {
		return DeleteOptions{}, err
	}
	opts.DryRun = dry
	return opts, nil
}

// policyName names the policy asked for, for messages.
func (o *DeleteOptions) policyName() string {
	if o.OrphanDependents != nil {
		return "Orphan (orphanDependents)"
	}
	return o.PropagationPolicy
}

// validate checks the options as Kubernetes' ValidateDeleteOptions does and normalises the
// grace period.
func (o *DeleteOptions) validate() error {
	switch o.PropagationPolicy {
	case "", PropagationOrphan, PropagationBackground, PropagationForeground:
	default:
		return unsupportedOption(DeleteOptionsKind, "propagationPolicy", o.PropagationPolicy,
			PropagationBackground, PropagationForeground, PropagationOrphan)
	}
	if o.PropagationPolicy != "" && o.OrphanDependents != nil {
		return apierrors.NewInvalid(metaGroup, "DeleteOptions", "", []*metav1.StatusCause{{
			Reason: "FieldValueInvalid", Field: "propagationPolicy",
			Message: fmt.Sprintf("Invalid value: %q: orphanDependents and deletionPropagation cannot be both set", o.PropagationPolicy)}})
	}
	if rv := o.Preconditions.ResourceVersion; rv != "" {
		if _, err := parseResourceVersion("preconditions.resourceVersion", rv); err != nil {
			return err
		}
	}
	if g := o.GracePeriodSeconds; g != nil && *g < 0 {
		one := int64(1)
		o.GracePeriodSeconds = &one
	}
	return nil
}

// validate checks the options' combinations as Kubernetes' ValidateListOptions does (422),
// and the values a REST caller would have had refused (400) for gRPC callers.
func (o *ListOptions) validate() error {
	if o.Limit < 0 {
		return apierrors.NewBadRequestField("limit", "limit must not be negative")
	}
	if o.ResourceVersion != "" {
		if _, err := parseResourceVersion("resourceVersion", o.ResourceVersion); err != nil {
			return err
		}
	}
	var causes []*metav1.StatusCause
	forbid := func(field, msg string) {
		causes = append(causes, &metav1.StatusCause{Reason: "FieldValueForbidden", Field: field, Message: "Forbidden: " + msg})
	}
	switch m := o.ResourceVersionMatch; m {
	case "":
	case MatchNotOlderThan, MatchExact:
		if o.ResourceVersion == "" {
			forbid("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided")
		}
		if o.Continue != "" {
			forbid("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided")
		}
		if m == MatchExact && o.ResourceVersion == "0" {
			forbid("resourceVersionMatch", `resourceVersionMatch "exact" is forbidden for resourceVersion "0"`)
		}
	default:
		return unsupportedOption("ListOptions", "resourceVersionMatch", m, MatchExact, MatchNotOlderThan)
	}
	if o.SendInitialEvents != nil {
		forbid("sendInitialEvents", "sendInitialEvents is forbidden for list")
	}
	if len(causes) > 0 {
		return apierrors.NewInvalid(metaGroup, "ListOptions", "", causes)
	}
	if o.Continue != "" && o.ResourceVersion != "" && o.ResourceVersion != "0" {
		return apierrors.NewBadRequestField("resourceVersion", "specifying resource version is not allowed when using continue")
	}
	return nil
}

// parseResourceVersion reads a resourceVersion: a non-negative decimal revision.
func parseResourceVersion(field, rv string) (int64, error) {
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, apierrors.NewBadRequestField(field, fmt.Sprintf("invalid resource version %q: it must be a non-negative integer", rv))
	}
	return n, nil
}
