package validation

import (
	"regexp"
	"strconv"
	"strings"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/labels"
)

var (
	deploymentStrategies = []string{"Recreate", "RollingUpdate"}
	percentRegexp        = regexp.MustCompile(`^[0-9]+%$`)
)

func validateReplicaSet(rs *appsv1.ReplicaSet) ErrorList {
	errs := validateObjectMeta(rs.GetMetadata(), true, isDNS1123Subdomain, NewPath("metadata"))
	spec := rs.GetSpec()
	if spec == nil {
		spec = &appsv1.ReplicaSetSpec{}
	}
	sp := NewPath("spec")
	if spec.Replicas != nil {
		errs = append(errs, validateNonNegative(int64(spec.GetReplicas()), sp.Child("replicas"))...)
	}
	errs = append(errs, validateNonNegative(int64(spec.GetMinReadySeconds()), sp.Child("minReadySeconds"))...)
	return append(errs, validateSelectorAndTemplate(spec.GetSelector(), spec.GetTemplate(), "replicaset", sp)...)
}

func validateDeployment(d *appsv1.Deployment) ErrorList {
	errs := validateObjectMeta(d.GetMetadata(), true, isDNS1123Subdomain, NewPath("metadata"))
	spec := d.GetSpec()
	if spec == nil {
		spec = &appsv1.DeploymentSpec{}
	}
	sp := NewPath("spec")
	if spec.Replicas != nil {
		errs = append(errs, validateNonNegative(int64(spec.GetReplicas()), sp.Child("replicas"))...)
	}
	errs = append(errs, validateSelectorAndTemplate(spec.GetSelector(), spec.GetTemplate(), "deployment", sp)...)
	errs = append(errs, validateDeploymentStrategy(spec.GetStrategy(), sp.Child("strategy"))...)
	errs = append(errs, validateNonNegative(int64(spec.GetMinReadySeconds()), sp.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		errs = append(errs, validateNonNegative(int64(spec.GetRevisionHistoryLimit()), sp.Child("revisionHistoryLimit"))...)
	}
	if spec.ProgressDeadlineSeconds != nil {
		// Progress is judged after pods have been ready for minReadySeconds, so a deadline
		// no longer than that would always expire.
		pd := spec.GetProgressDeadlineSeconds()
		if pd < 0 {
			errs = append(errs, Invalid(sp.Child("progressDeadlineSeconds"), pd, nonNegativeMsg))
		} else if pd <= spec.GetMinReadySeconds() {
			errs = append(errs, Invalid(sp.Child("progressDeadlineSeconds"), pd, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

// validateSelectorAndTemplate checks a workload's selector and pod template: the selector
// must select the template's own pods, or the controller would create pods forever.
func validateSelectorAndTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, kind string, sp *Path) ErrorList {
	var errs ErrorList
	selPath := sp.Child("selector")
	selOK := false
	switch {
	case sel == nil:
		errs = append(errs, Required(selPath, ""))
	case len(sel.GetMatchLabels())+len(sel.GetMatchExpressions()) == 0:
		// An empty selector selects every pod in the namespace.
		errs = append(errs, Invalid(selPath, "", "empty selector is invalid for "+kind))
	default:
		selErrs := validateLabelSelector(sel, selPath)
		errs = append(errs, selErrs...)
		selOK = len(selErrs) == 0
	}

	tp := sp.Child("template")
	if tmpl == nil {
		return append(errs, Required(tp, ""))
	}
	if selOK {
		if s, err := labels.FromLabelSelector(sel); err != nil {
			errs = append(errs, Invalid(selPath, selectorString(sel), err.Error()))
		} else if !s.Empty() && !s.Matches(tmpl.GetMetadata().GetLabels()) {
			errs = append(errs, Invalid(tp.Child("metadata", "labels"), tmpl.GetMetadata().GetLabels(),
				"selector does not match template labels"))
		}
	}
	errs = append(errs, validateMetaMaps(tmpl.GetMetadata(), tp.Child("metadata"))...)
	spec := tmpl.GetSpec()
	if spec == nil {
		spec = &corev1.PodSpec{}
	}
	specPath := tp.Child("spec")
	errs = append(errs, validatePodSpec(spec, specPath)...)
	// The controller replaces pods that exit; a pod that is not restarted in place would
	// churn. Other values are reported by validatePodSpec.
	if rp := spec.GetRestartPolicy(); rp == "OnFailure" || rp == "Never" {
		errs = append(errs, NotSupported(specPath.Child("restartPolicy"), rp, []string{"Always"}))
	}
	if spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, Invalid(specPath.Child("activeDeadlineSeconds"), spec.GetActiveDeadlineSeconds(),
			"activeDeadlineSeconds in "+kind+" is not Supported"))
	}
	return errs
}

func validateDeploymentStrategy(s *appsv1.DeploymentStrategy, p *Path) ErrorList {
	var errs ErrorList
	switch s.GetType() {
	case "Recreate":
		if s.GetRollingUpdate() != nil {
			errs = append(errs, Forbidden(p.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case "RollingUpdate":
		ru := s.GetRollingUpdate()
		rp := p.Child("rollingUpdate")
		if ru == nil {
			return append(errs, Required(rp, "this should be defaulted and never be nil"))
		}
		errs = append(errs, validateIntOrPercent(ru.GetMaxUnavailable(), rp.Child("maxUnavailable"))...)
		errs = append(errs, validateIntOrPercent(ru.GetMaxSurge(), rp.Child("maxSurge"))...)
		if len(errs) > 0 {
			return errs
		}
		// With neither surge nor unavailability the rollout could never make progress.
		if intOrPercentValue(ru.GetMaxUnavailable()) == 0 && intOrPercentValue(ru.GetMaxSurge()) == 0 {
			errs = append(errs, Invalid(rp.Child("maxUnavailable"), intOrStringValue(ru.GetMaxUnavailable()), "may not be 0 when `maxSurge` is 0"))
		}
		if isPercent(ru.GetMaxUnavailable()) && intOrPercentValue(ru.GetMaxUnavailable()) > 100 {
			errs = append(errs, Invalid(rp.Child("maxUnavailable"), intOrStringValue(ru.GetMaxUnavailable()), "must not be greater than 100%"))
		}
	case "":
		errs = append(errs, Required(p.Child("type"), ""))
	default:
		errs = append(errs, NotSupported(p.Child("type"), s.GetType(), deploymentStrategies))
	}
	return errs
}

// validateIntOrPercent checks a non-negative integer or a percentage such as "25%".
func validateIntOrPercent(v *metav1.IntOrString, p *Path) ErrorList {
	switch x := v.GetValue().(type) {
	case *metav1.IntOrString_IntVal:
		return validateNonNegative(int64(x.IntVal), p)
	case *metav1.IntOrString_StrVal:
		if !percentRegexp.MatchString(x.StrVal) {
			return ErrorList{Invalid(p, x.StrVal, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")}
		}
		return nil
	}
	return ErrorList{Required(p, "must be an integer or percentage (e.g '5%')")}
}

func isPercent(v *metav1.IntOrString) bool {
	_, ok := v.GetValue().(*metav1.IntOrString_StrVal)
	return ok
}

// intOrPercentValue is the number in an already validated IntOrString (25 for "25%").
func intOrPercentValue(v *metav1.IntOrString) int {
	if x, ok := v.GetValue().(*metav1.IntOrString_StrVal); ok {
		n, _ := strconv.Atoi(strings.TrimSuffix(x.StrVal, "%"))
		return n
	}
	return int(v.GetIntVal())
}

// intOrStringValue is the plain Go value, for error messages.
func intOrStringValue(v *metav1.IntOrString) any {
	if x, ok := v.GetValue().(*metav1.IntOrString_StrVal); ok {
		return x.StrVal
	}
	return v.GetIntVal()
}

// ---- status ----

const greaterThanReplicasMsg = "cannot be greater than status.replicas"

func validateReplicaSetStatus(st *appsv1.ReplicaSetStatus, p *Path) ErrorList {
	var errs ErrorList
	for _, f := range []struct {
		name string
		v    int64
	}{{"replicas", int64(st.GetReplicas())}, {"fullyLabeledReplicas", int64(st.GetFullyLabeledReplicas())},
		{"readyReplicas", int64(st.GetReadyReplicas())}, {"availableReplicas", int64(st.GetAvailableReplicas())},
		{"observedGeneration", st.GetObservedGeneration()}} {
		errs = append(errs, validateNonNegative(f.v, p.Child(f.name))...)
	}
	// Each count is a subset of the one before it.
	if st.GetFullyLabeledReplicas() > st.GetReplicas() {
		errs = append(errs, Invalid(p.Child("fullyLabeledReplicas"), st.GetFullyLabeledReplicas(), greaterThanReplicasMsg))
	}
	if st.GetReadyReplicas() > st.GetReplicas() {
		errs = append(errs, Invalid(p.Child("readyReplicas"), st.GetReadyReplicas(), greaterThanReplicasMsg))
	}
	if st.GetAvailableReplicas() > st.GetReplicas() {
		errs = append(errs, Invalid(p.Child("availableReplicas"), st.GetAvailableReplicas(), greaterThanReplicasMsg))
	}
	if st.GetAvailableReplicas() > st.GetReadyReplicas() {
		errs = append(errs, Invalid(p.Child("availableReplicas"), st.GetAvailableReplicas(), "cannot be greater than readyReplicas"))
	}
	for i, c := range st.GetConditions() {
		if c.GetType() == "" {
			errs = append(errs, Required(p.Child("conditions").Index(i).Child("type"), ""))
		}
	}
	return errs
}

func validateDeploymentStatus(st *appsv1.DeploymentStatus, p *Path) ErrorList {
	var errs ErrorList
	for _, f := range []struct {
		name string
		v    int64
	}{{"observedGeneration", st.GetObservedGeneration()}, {"replicas", int64(st.GetReplicas())},
		{"updatedReplicas", int64(st.GetUpdatedReplicas())}, {"readyReplicas", int64(st.GetReadyReplicas())},
		{"availableReplicas", int64(st.GetAvailableReplicas())}, {"unavailableReplicas", int64(st.GetUnavailableReplicas())},
		{"collisionCount", int64(st.GetCollisionCount())}} {
		errs = append(errs, validateNonNegative(f.v, p.Child(f.name))...)
	}
	if st.GetUpdatedReplicas() > st.GetReplicas() {
		errs = append(errs, Invalid(p.Child("updatedReplicas"), st.GetUpdatedReplicas(), greaterThanReplicasMsg))
	}
	if st.GetReadyReplicas() > st.GetReplicas() {
		errs = append(errs, Invalid(p.Child("readyReplicas"), st.GetReadyReplicas(), greaterThanReplicasMsg))
	}
	if st.GetAvailableReplicas() > st.GetReplicas() {
		errs = append(errs, Invalid(p.Child("availableReplicas"), st.GetAvailableReplicas(), greaterThanReplicasMsg))
	}
	if st.GetAvailableReplicas() > st.GetReadyReplicas() {
		errs = append(errs, Invalid(p.Child("availableReplicas"), st.GetAvailableReplicas(), "cannot be greater than readyReplicas"))
	}
	for i, c := range st.GetConditions() {
		if c.GetType() == "" {
			errs = append(errs, Required(p.Child("conditions").Index(i).Child("type"), ""))
		}
	}
	return errs
}
