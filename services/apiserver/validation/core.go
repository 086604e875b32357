package validation

import (
	"strings"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/labels"
)

var (
	namespacePhases = []string{"Active", "Terminating"}
	eventTypes      = []string{"Normal", "Warning"}
)

// ---- Namespace ----

func validateNamespace(ns *corev1.Namespace) ErrorList {
	// A namespace name becomes a DNS label in service names (svc.ns.svc.cluster.local).
	errs := validateObjectMeta(ns.GetMetadata(), false, isDNS1123Label, NewPath("metadata"))
	for _, f := range ns.GetSpec().GetFinalizers() {
		errs = append(errs, validateFinalizerName(f, NewPath("spec", "finalizers"))...)
	}
	return append(errs, validateNamespaceStatus(ns.GetStatus(), NewPath("status"))...)
}

// validateFinalizerName accepts a qualified name; one without a domain must be a standard
// finalizer ("kubernetes"), since only the system may own unprefixed names.
func validateFinalizerName(f string, p *Path) ErrorList {
	errs := validateLabelName(f, p)
	if len(errs) == 0 && !strings.Contains(f, "/") && f != "kubernetes" {
		errs = append(errs, Invalid(p, f, "name is neither a standard finalizer name nor is it fully qualified"))
	}
	return errs
}

// validateNamespaceUpdate: a namespace being deleted may only lose spec finalizers, like
// metadata ones.
func validateNamespaceUpdate(ns, old *corev1.Namespace) ErrorList {
	if old.GetMetadata().GetDeletionTimestamp() == "" {
		return nil
	}
	return validateNoNewFinalizers(ns.GetSpec().GetFinalizers(), old.GetSpec().GetFinalizers(), NewPath("spec", "finalizers"))
}

// validateNamespacePhase keeps the phase what the deletionTimestamp says: clients (and the
// namespace's content) rely on Terminating meaning "being deleted".
func validateNamespacePhase(ns *corev1.Namespace) ErrorList {
	phase, p := ns.GetStatus().GetPhase(), NewPath("status", "phase")
	if ns.GetMetadata().GetDeletionTimestamp() == "" {
		if phase != "Active" {
			return ErrorList{Invalid(p, phase, "may only be 'Active' if `deletionTimestamp` is empty")}
		}
		return nil
	}
	if phase != "Terminating" {
		return ErrorList{Invalid(p, phase, "may only be 'Terminating' if `deletionTimestamp` is not empty")}
	}
	return nil
}

func validateNamespaceStatus(st *corev1.NamespaceStatus, p *Path) ErrorList {
	if ph := st.GetPhase(); ph != "" {
		return oneOf(ph, namespacePhases, p.Child("phase"))
	}
	return nil
}

// ---- Node ----

func validateNode(node *corev1.Node) ErrorList {
	errs := validateObjectMeta(node.GetMetadata(), false, isDNS1123Subdomain, NewPath("metadata"))
	spec := node.GetSpec()
	sp := NewPath("spec")
	if c := spec.GetPodCidr(); c != "" {
		errs = append(errs, validateCIDR(c, sp.Child("podCIDR"))...)
	}
	for i, c := range spec.GetPodCidrs() {
		errs = append(errs, validateCIDR(c, sp.Child("podCIDRs").Index(i))...)
	}
	errs = append(errs, validateTaints(spec.GetTaints(), sp.Child("taints"))...)
	return append(errs, validateNodeStatus(node.GetStatus(), NewPath("status"))...)
}

func validateTaints(taints []*corev1.Taint, p *Path) ErrorList {
	var errs ErrorList
	// The scheduler and the taint manager identify a taint by its key and effect.
	seen := map[string]bool{}
	for i, t := range taints {
		ip := p.Index(i)
		if t.GetKey() == "" {
			errs = append(errs, Required(ip.Child("key"), ""))
		} else {
			errs = append(errs, validateLabelName(t.GetKey(), ip.Child("key"))...)
		}
		if msgs := labels.IsValidLabelValue(t.GetValue()); len(msgs) > 0 {
			errs = append(errs, Invalid(ip.Child("value"), t.GetValue(), strings.Join(msgs, "; ")))
		}
		if t.GetEffect() == "" {
			errs = append(errs, Required(ip.Child("effect"), ""))
		} else {
			errs = append(errs, oneOf(t.GetEffect(), taintEffects, ip.Child("effect"))...)
		}
		id := t.GetKey() + ":" + t.GetEffect()
		if seen[id] {
			e := Duplicate(ip, id)
			e.Detail = "taints must be unique by key and effect pair"
			errs = append(errs, e)
		}
		seen[id] = true
	}
	return errs
}

func validateNodeStatus(st *corev1.NodeStatus, p *Path) ErrorList {
	errs := validateResourceList(st.GetCapacity(), p.Child("capacity"))
	errs = append(errs, validateResourceList(st.GetAllocatable(), p.Child("allocatable"))...)
	for i, c := range st.GetConditions() {
		if c.GetType() == "" {
			errs = append(errs, Required(p.Child("conditions").Index(i).Child("type"), ""))
		}
	}
	for i, a := range st.GetAddresses() {
		ap := p.Child("addresses").Index(i)
		if a.GetType() == "" {
			errs = append(errs, Required(ap.Child("type"), ""))
		}
		if a.GetAddress() == "" {
			errs = append(errs, Required(ap.Child("address"), ""))
		}
	}
	return errs
}

// validateNodeUpdate: the pod CIDR is handed out once (by the node IPAM or the kubelet's
// registration); changing it would break the routes of running pods.
func validateNodeUpdate(node, old *corev1.Node) ErrorList {
	var errs ErrorList
	sp := NewPath("spec")
	if o := old.GetSpec().GetPodCidr(); o != "" && node.GetSpec().GetPodCidr() != o {
		errs = append(errs, Forbidden(sp.Child("podCIDR"), "node updates may not change podCIDR except from \"\" to valid"))
	}
	if o := old.GetSpec().GetPodCidrs(); len(o) > 0 && strings.Join(node.GetSpec().GetPodCidrs(), ",") != strings.Join(o, ",") {
		errs = append(errs, Forbidden(sp.Child("podCIDRs"), "node updates may not change podCIDRs except from \"\" to valid"))
	}
	if o := old.GetSpec().GetProviderId(); o != "" && node.GetSpec().GetProviderId() != o {
		errs = append(errs, Forbidden(sp.Child("providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	return errs
}

// ---- Endpoints ----

func validateEndpoints(ep *corev1.Endpoints) ErrorList {
	errs := validateObjectMeta(ep.GetMetadata(), true, isDNS1123Subdomain, NewPath("metadata"))
	for i, ss := range ep.GetSubsets() {
		sp := NewPath("subsets").Index(i)
		if len(ss.GetAddresses()) == 0 && len(ss.GetNotReadyAddresses()) == 0 {
			errs = append(errs, Required(sp, "must specify `addresses` or `notReadyAddresses`"))
		}
		for j, a := range ss.GetAddresses() {
			errs = append(errs, validateEndpointAddress(a, sp.Child("addresses").Index(j))...)
		}
		for j, a := range ss.GetNotReadyAddresses() {
			errs = append(errs, validateEndpointAddress(a, sp.Child("notReadyAddresses").Index(j))...)
		}
		// As on services, several ports need names to tell them apart.
		requireName := len(ss.GetPorts()) > 1
		names := map[string]bool{}
		for j, port := range ss.GetPorts() {
			pp := sp.Child("ports").Index(j)
			switch n := port.GetName(); {
			case n == "" && requireName:
				errs = append(errs, Required(pp.Child("name"), ""))
			case n == "":
			case len(isDNS1123Label(n)) > 0:
				errs = append(errs, validateDNSLabel(n, pp.Child("name"))...)
			case names[n]:
				errs = append(errs, Duplicate(pp.Child("name"), n))
			default:
				names[n] = true
			}
			if !isValidPortNum(port.GetPort()) {
				errs = append(errs, Invalid(pp.Child("port"), port.GetPort(), portRangeMsg))
			}
			errs = append(errs, validateProtocol(port.GetProtocol(), pp.Child("protocol"))...)
		}
	}
	return errs
}

func validateEndpointAddress(a *corev1.EndpointAddress, p *Path) ErrorList {
	var errs ErrorList
	if a.GetIp() == "" {
		errs = append(errs, Required(p.Child("ip"), ""))
	} else {
		errs = append(errs, validateIP(a.GetIp(), p.Child("ip"))...)
	}
	if h := a.GetHostname(); h != "" {
		errs = append(errs, validateDNSLabel(h, p.Child("hostname"))...)
	}
	if n := a.GetNodeName(); n != "" {
		errs = append(errs, validateDNSSubdomain(n, p.Child("nodeName"))...)
	}
	return errs
}

// ---- Event ----

func validateEvent(ev *corev1.Event) ErrorList {
	errs := validateObjectMeta(ev.GetMetadata(), true, isDNS1123Subdomain, NewPath("metadata"))
	io := ev.GetInvolvedObject()
	ip := NewPath("involvedObject")
	if io.GetKind() == "" {
		errs = append(errs, Required(ip.Child("kind"), ""))
	}
	if io.GetName() == "" {
		errs = append(errs, Required(ip.Child("name"), ""))
	}
	// An event lives beside the object it describes; events about cluster-scoped objects
	// (nodes, namespaces) go to "default".
	ns := ev.GetMetadata().GetNamespace()
	if ons := io.GetNamespace(); ons != "" && ns != "" && ons != ns {
		errs = append(errs, Invalid(ip.Child("namespace"), ons, "does not match event.namespace"))
	}
	if t := ev.GetType(); t != "" {
		errs = append(errs, oneOf(t, eventTypes, NewPath("type"))...)
	}
	errs = append(errs, validateNonNegative(int64(ev.GetCount()), NewPath("count"))...)
	return errs
}

// ---- Binding ----

// ValidateBinding checks a pod binding: it must name a node by a valid Node name, since the
// pod's spec.nodeName becomes that name and every later update of the pod is validated with
// it.
func ValidateBinding(b *corev1.Binding) ErrorList {
	var errs ErrorList
	t, p := b.GetTarget(), NewPath("target")
	if k := t.GetKind(); k != "" && k != "Node" {
		errs = append(errs, NotSupported(p.Child("kind"), k, []string{"Node"}))
	}
	if n := t.GetName(); n == "" {
		errs = append(errs, Required(p.Child("name"), ""))
	} else {
		errs = append(errs, validateDNSSubdomain(n, p.Child("name"))...)
	}
	// They are copied onto the pod.
	return append(errs, validateAnnotations(b.GetMetadata().GetAnnotations(), NewPath("metadata", "annotations"))...)
}
