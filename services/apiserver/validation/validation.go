// Package validation is the apiserver's defaulting and validation of API objects, with
// Kubernetes' semantics: Default fills what Kubernetes' defaulters fill, and Validate,
// ValidateUpdate and ValidateStatusUpdate report problems as field errors carrying the JSON
// path of the offending field and Kubernetes' cause reasons, so a refused request reads the
// same as it would against Kubernetes.
//
// Validation expects defaulted objects (the registry calls Default first): a field that has a
// default is reported as required when it is empty.
package validation

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/labels"
)

// Validate checks a new object (create). The kind is found by the object's Go type; a kind
// without specific rules gets its metadata checked.
func Validate(obj scheme.Object) ErrorList {
	switch o := obj.(type) {
	case *corev1.Namespace:
		return validateNamespace(o)
	case *corev1.Node:
		return validateNode(o)
	case *corev1.Pod:
		return validatePod(o)
	case *corev1.Service:
		return validateService(o)
	case *corev1.Endpoints:
		return validateEndpoints(o)
	case *corev1.Event:
		return validateEvent(o)
	case *appsv1.ReplicaSet:
		return validateReplicaSet(o)
	case *appsv1.Deployment:
		return validateDeployment(o)
	case *coordinationv1.Lease:
		return validateLease(o)
	case nil:
		return ErrorList{Required(NewPath("metadata"), "an object is required")}
	}
	namespaced := true
	if k, err := scheme.Default().ForMessage(obj); err == nil {
		namespaced = k.Namespaced
	}
	return validateObjectMeta(obj.GetMetadata(), namespaced, isDNS1123Subdomain, NewPath("metadata"))
}

// ValidateUpdate checks obj, which replaces old (an update of spec and metadata): everything
// Validate checks plus the kind's immutable fields.
func ValidateUpdate(obj, old scheme.Object) ErrorList {
	if errs := checkSameType(obj, old); errs != nil {
		return errs
	}
	errs := Validate(obj)
	errs = append(errs, validateObjectMetaUpdate(obj.GetMetadata(), old.GetMetadata(), NewPath("metadata"))...)
	switch o := obj.(type) {
	case *corev1.Namespace:
		errs = append(errs, validateNamespaceUpdate(o, old.(*corev1.Namespace))...)
	case *corev1.Node:
		errs = append(errs, validateNodeUpdate(o, old.(*corev1.Node))...)
	case *corev1.Pod:
		errs = append(errs, validatePodUpdate(o, old.(*corev1.Pod))...)
	case *corev1.Service:
		errs = append(errs, validateServiceUpdate(o, old.(*corev1.Service))...)
	case *appsv1.ReplicaSet:
		errs = append(errs, validateSelectorUpdate(o.GetSpec().GetSelector(), old.(*appsv1.ReplicaSet).GetSpec().GetSelector())...)
	case *appsv1.Deployment:
		errs = append(errs, validateSelectorUpdate(o.GetSpec().GetSelector(), old.(*appsv1.Deployment).GetSpec().GetSelector())...)
	}
	return errs
}

// ValidateStatusUpdate checks a status update. The registry has already taken spec and
// metadata from old, so only the status values are checked.
func ValidateStatusUpdate(obj, old scheme.Object) ErrorList {
	if errs := checkSameType(obj, old); errs != nil {
		return errs
	}
	path := NewPath("status")
	switch o := obj.(type) {
	case *corev1.Namespace:
		return append(validateNamespaceStatus(o.GetStatus(), path), validateNamespacePhase(o)...)
	case *corev1.Node:
		return validateNodeStatus(o.GetStatus(), path)
	case *corev1.Pod:
		return validatePodStatus(o.GetStatus(), path)
	case *corev1.Service:
		return validateServiceStatus(o.GetStatus(), path)
	case *appsv1.ReplicaSet:
		return validateReplicaSetStatus(o.GetStatus(), path)
	case *appsv1.Deployment:
		return validateDeploymentStatus(o.GetStatus(), path)
	}
	return nil
}

func checkSameType(obj, old scheme.Object) ErrorList {
	if obj == nil || old == nil {
		return ErrorList{Required(NewPath("metadata"), "both the new and the old object are required")}
	}
	if obj.ProtoReflect().Descriptor().FullName() != old.ProtoReflect().Descriptor().FullName() {
		return ErrorList{Invalid(NewPath("kind"), obj.GetKind(),
			fmt.Sprintf("may not change the kind of an object from %s", old.ProtoReflect().Descriptor().Name()))}
	}
	return nil
}

// ---- metadata ----

// nameFunc validates an object name and returns the reasons it is not valid.
type nameFunc func(string) []string

func isDNS1123Subdomain(s string) []string { return labels.IsDNS1123Subdomain(s) }
func isDNS1123Label(s string) []string     { return labels.IsDNS1123Label(s) }
func isDNS1035Label(s string) []string     { return labels.IsDNS1035Label(s) }

// totalAnnotationSizeLimit is Kubernetes' cap on the summed size of an object's annotation
// keys and values: annotations live in etcd with the object, so they must stay small.
const totalAnnotationSizeLimit = 256 * 1024

// validateObjectMeta checks the metadata of a top-level object.
func validateObjectMeta(md *metav1.ObjectMeta, namespaced bool, validName nameFunc, path *Path) ErrorList {
	var errs ErrorList
	name := md.GetName()
	if name == "" {
		errs = append(errs, Required(path.Child("name"), "name or generateName is required"))
	} else {
		for _, msg := range validName(name) {
			errs = append(errs, Invalid(path.Child("name"), name, msg))
		}
	}
	ns := md.GetNamespace()
	if namespaced {
		if ns == "" {
			errs = append(errs, Required(path.Child("namespace"), ""))
		} else {
			for _, msg := range labels.IsDNS1123Label(ns) {
				errs = append(errs, Invalid(path.Child("namespace"), ns, msg))
			}
		}
	} else if ns != "" {
		errs = append(errs, Forbidden(path.Child("namespace"), "not allowed on this type"))
	}
	errs = append(errs, validateMetaMaps(md, path)...)
	errs = append(errs, validateOwnerReferences(md.GetOwnerReferences(), path.Child("ownerReferences"))...)
	for _, f := range md.GetFinalizers() {
		for _, msg := range labels.IsQualifiedName(f) {
			errs = append(errs, Invalid(path.Child("finalizers"), f, msg))
		}
	}
	return errs
}

// validateMetaMaps checks labels and annotations, the part of metadata a pod template has too.
func validateMetaMaps(md *metav1.ObjectMeta, path *Path) ErrorList {
	errs := validateLabels(md.GetLabels(), path.Child("labels"))
	return append(errs, validateAnnotations(md.GetAnnotations(), path.Child("annotations"))...)
}

// validateLabels checks label keys and values. As in Kubernetes, errors name the map itself.
func validateLabels(m map[string]string, path *Path) ErrorList {
	var errs ErrorList
	for _, k := range sortedKeys(m) {
		errs = append(errs, validateLabelName(k, path)...)
		for _, msg := range labels.IsValidLabelValue(m[k]) {
			errs = append(errs, Invalid(path, m[k], msg))
		}
	}
	return errs
}

func validateLabelName(k string, path *Path) ErrorList {
	var errs ErrorList
	for _, msg := range labels.IsQualifiedName(k) {
		errs = append(errs, Invalid(path, k, msg))
	}
	return errs
}

func validateAnnotations(m map[string]string, path *Path) ErrorList {
	var errs ErrorList
	size := 0
	for _, k := range sortedKeys(m) {
		// Kubernetes accepts upper case in annotation keys, so the key is checked lowered.
		for _, msg := range labels.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, Invalid(path, k, msg))
		}
		size += len(k) + len(m[k])
	}
	if size > totalAnnotationSizeLimit {
		errs = append(errs, TooLong(path, "", totalAnnotationSizeLimit))
	}
	return errs
}

func validateOwnerReferences(refs []*metav1.OwnerReference, path *Path) ErrorList {
	var errs ErrorList
	var controllers []string
	for i, ref := range refs {
		p := path.Index(i)
		// Kubernetes reports these as invalid (not required) values, with these words.
		if ref.GetApiVersion() == "" {
			errs = append(errs, Invalid(p.Child("apiVersion"), ref.GetApiVersion(), "version must not be empty"))
		}
		if ref.GetKind() == "" {
			errs = append(errs, Invalid(p.Child("kind"), ref.GetKind(), "kind must not be empty"))
		}
		if ref.GetName() == "" {
			errs = append(errs, Invalid(p.Child("name"), ref.GetName(), "name must not be empty"))
		}
		if ref.GetUid() == "" {
			errs = append(errs, Invalid(p.Child("uid"), ref.GetUid(), "uid must not be empty"))
		}
		if ref.GetController() {
			controllers = append(controllers, ref.GetKind()+"/"+ref.GetName())
		}
	}
	// The garbage collector and the controllers rely on there being a single managing owner.
	if len(controllers) > 1 {
		errs = append(errs, Invalid(path, omitValue{}, fmt.Sprintf(
			"Only one reference can have Controller set to true. Found \"true\" in references for %s",
			strings.Join(controllers, " and "))))
	}
	return errs
}

// validateObjectMetaUpdate checks the metadata fields that never change after create.
func validateObjectMetaUpdate(md, old *metav1.ObjectMeta, path *Path) ErrorList {
	var errs ErrorList
	if md.GetName() != old.GetName() {
		errs = append(errs, Invalid(path.Child("name"), md.GetName(), "field is immutable"))
	}
	if md.GetNamespace() != old.GetNamespace() {
		errs = append(errs, Invalid(path.Child("namespace"), md.GetNamespace(), "field is immutable"))
	}
	// The registry copies these from the stored object; an empty value means "not sent".
	if uid := md.GetUid(); uid != "" && uid != old.GetUid() {
		errs = append(errs, Invalid(path.Child("uid"), uid, "field is immutable"))
	}
	if ts := md.GetCreationTimestamp(); ts != "" && ts != old.GetCreationTimestamp() {
		errs = append(errs, Invalid(path.Child("creationTimestamp"), ts, "field is immutable"))
	}
	// Whoever finalizes an object being deleted may already be done with it: a new
	// finalizer could hold it forever.
	if old.GetDeletionTimestamp() != "" {
		errs = append(errs, validateNoNewFinalizers(md.GetFinalizers(), old.GetFinalizers(), path.Child("finalizers"))...)
	}
	return errs
}

// validateNoNewFinalizers refuses finalizers that old does not have (an object being
// deleted may only lose finalizers).
func validateNoNewFinalizers(finalizers, old []string, path *Path) ErrorList {
	had := map[string]bool{}
	for _, f := range old {
		had[f] = true
	}
	var added []string
	for _, f := range finalizers {
		if !had[f] {
			added = append(added, strconv.Quote(f))
			had[f] = true
		}
	}
	if len(added) == 0 {
		return nil
	}
	return ErrorList{Forbidden(path, "no new finalizers can be added if the object is being deleted, found new finalizers ["+
		strings.Join(added, ", ")+"]")}
}

// ---- shared value checks ----

const (
	portRangeMsg   = "must be between 1 and 65535, inclusive"
	nonNegativeMsg = "must be greater than or equal to 0"
	ipMsg          = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
	cidrMsg        = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
)

func validateNonNegative(v int64, path *Path) ErrorList {
	if v < 0 {
		return ErrorList{Invalid(path, v, nonNegativeMsg)}
	}
	return nil
}

func isValidPortNum(p int32) bool { return p >= 1 && p <= 65535 }

var (
	portNameCharset   = regexp.MustCompile(`^[-a-z0-9]+$`)
	portNameOneLetter = regexp.MustCompile(`[a-z]`)
)

// isValidPortName checks an IANA_SVC_NAME (RFC 6335), what Kubernetes requires of port names
// that other objects refer to (a probe's or a service's targetPort).
func isValidPortName(s string) []string {
	var msgs []string
	if len(s) > 15 {
		msgs = append(msgs, "must be no more than 15 characters")
	}
	if !portNameCharset.MatchString(s) {
		msgs = append(msgs, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
	}
	if !portNameOneLetter.MatchString(s) {
		msgs = append(msgs, "must contain at least one letter (a-z)")
	}
	if strings.Contains(s, "--") {
		msgs = append(msgs, "must not contain consecutive hyphens")
	}
	if s != "" && (s[0] == '-' || s[len(s)-1] == '-') {
		msgs = append(msgs, "must not begin or end with a hyphen")
	}
	return msgs
}

// validatePortNumOrName checks an IntOrString naming a port: a number 1..65535 or a port name.
func validatePortNumOrName(port *metav1.IntOrString, path *Path) ErrorList {
	switch v := port.GetValue().(type) {
	case *metav1.IntOrString_IntVal:
		if !isValidPortNum(v.IntVal) {
			return ErrorList{Invalid(path, v.IntVal, portRangeMsg)}
		}
	case *metav1.IntOrString_StrVal:
		var errs ErrorList
		for _, msg := range isValidPortName(v.StrVal) {
			errs = append(errs, Invalid(path, v.StrVal, msg))
		}
		return errs
	default:
		return ErrorList{Required(path, "a port number or name is required")}
	}
	return nil
}

var supportedProtocols = []string{"SCTP", "TCP", "UDP"}

func validateProtocol(proto string, path *Path) ErrorList {
	if proto == "" {
		return ErrorList{Required(path, "")}
	}
	return oneOf(proto, supportedProtocols, path)
}

// oneOf reports NotSupported unless v is one of valid.
func oneOf(v string, valid []string, path *Path) ErrorList {
	for _, ok := range valid {
		if v == ok {
			return nil
		}
	}
	return ErrorList{NotSupported(path, v, valid)}
}

func validateIP(ip string, path *Path) ErrorList {
	if net.ParseIP(ip) == nil {
		return ErrorList{Invalid(path, ip, ipMsg)}
	}
	return nil
}

func validateCIDR(cidr string, path *Path) ErrorList {
	if _, _, err := net.ParseCIDR(cidr); err != nil {
		return ErrorList{Invalid(path, cidr, cidrMsg)}
	}
	return nil
}

func validateDNSSubdomain(s string, path *Path) ErrorList {
	var errs ErrorList
	for _, msg := range labels.IsDNS1123Subdomain(s) {
		errs = append(errs, Invalid(path, s, msg))
	}
	return errs
}

func validateDNSLabel(s string, path *Path) ErrorList {
	var errs ErrorList
	for _, msg := range labels.IsDNS1123Label(s) {
		errs = append(errs, Invalid(path, s, msg))
	}
	return errs
}

// validateLabelSelector checks that a selector is well formed by parsing it as the
// controllers will.
func validateLabelSelector(sel *metav1.LabelSelector, path *Path) ErrorList {
	if sel == nil {
		return nil
	}
	var errs ErrorList
	errs = append(errs, validateLabels(sel.GetMatchLabels(), path.Child("matchLabels"))...)
	for i, req := range sel.GetMatchExpressions() {
		p := path.Child("matchExpressions").Index(i)
		errs = append(errs, validateLabelName(req.GetKey(), p.Child("key"))...)
		switch req.GetOperator() {
		case "In", "NotIn":
			if len(req.GetValues()) == 0 {
				errs = append(errs, Required(p.Child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
			}
		case "Exists", "DoesNotExist":
			if len(req.GetValues()) > 0 {
				errs = append(errs, Forbidden(p.Child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
			}
		default:
			errs = append(errs, Invalid(p.Child("operator"), req.GetOperator(), "not a valid selector operator"))
		}
		for j, v := range req.GetValues() {
			for _, msg := range labels.IsValidLabelValue(v) {
				errs = append(errs, Invalid(p.Child("values").Index(j), v, msg))
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	// Anything the parser still refuses is reported on the selector as a whole.
	if _, err := labels.FromLabelSelector(sel); err != nil {
		errs = append(errs, Invalid(path, selectorString(sel), err.Error()))
	}
	return errs
}

// selectorString renders a selector the way kubectl prints one ("app=web,tier in (a,b)"),
// for error messages.
func selectorString(sel *metav1.LabelSelector) string {
	var parts []string
	for _, k := range sortedKeys(sel.GetMatchLabels()) {
		parts = append(parts, k+"="+sel.GetMatchLabels()[k])
	}
	for _, req := range sel.GetMatchExpressions() {
		switch req.GetOperator() {
		case "Exists":
			parts = append(parts, req.GetKey())
		case "DoesNotExist":
			parts = append(parts, "!"+req.GetKey())
		default:
			parts = append(parts, fmt.Sprintf("%s %s (%s)", req.GetKey(), strings.ToLower(req.GetOperator()),
				strings.Join(req.GetValues(), ",")))
		}
	}
	return strings.Join(parts, ",")
}

// validateSelectorUpdate enforces apps/v1's immutable selector: changing it would orphan the
// pods the controller already owns.
func validateSelectorUpdate(sel, old *metav1.LabelSelector) ErrorList {
	if !proto.Equal(sel, old) {
		return ErrorList{Invalid(NewPath("spec", "selector"), selectorString(sel), "field is immutable")}
	}
	return nil
}

func isInteger(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}
