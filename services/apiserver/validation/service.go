package validation

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

var (
	serviceTypes      = []string{"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"}
	sessionAffinities = []string{"ClientIP", "None"}
	trafficPolicies   = []string{"Cluster", "Local"}
	ipFamilyPolicies  = []string{"PreferDualStack", "RequireDualStack", "SingleStack"}
	ipFamilies        = []string{"IPv4", "IPv6"}
)

// headless services ("clusterIP: None") get DNS records for their endpoints but no virtual IP.
func isHeadless(spec *corev1.ServiceSpec) bool { return spec.GetClusterIp() == "None" }

func validateService(svc *corev1.Service) ErrorList {
	// A service name becomes a DNS name (and environment variable prefixes in pods), which
	// must start with a letter: RFC 1035.
	errs := validateObjectMeta(svc.GetMetadata(), true, isDNS1035Label, NewPath("metadata"))
	spec := svc.GetSpec()
	sp := NewPath("spec")
	typ := spec.GetType()

	if typ == "" {
		errs = append(errs, Required(sp.Child("type"), ""))
	} else {
		errs = append(errs, oneOf(typ, serviceTypes, sp.Child("type"))...)
	}

	switch ip := spec.GetClusterIp(); {
	case typ == "ExternalName":
		// An ExternalName service is only a DNS CNAME: it has no virtual IP of its own.
		if ip != "" {
			errs = append(errs, Forbidden(sp.Child("clusterIP"), "must be empty for ExternalName services"))
		}
		name := strings.TrimSuffix(spec.GetExternalName(), ".")
		if name == "" {
			errs = append(errs, Required(sp.Child("externalName"), ""))
		} else {
			errs = append(errs, validateDNSSubdomain(name, sp.Child("externalName"))...)
		}
	case ip == "None":
		if typ == "NodePort" || typ == "LoadBalancer" {
			errs = append(errs, Invalid(sp.Child("clusterIP"), ip, "may not be set to 'None' for "+typ+" services"))
		}
	case ip != "":
		errs = append(errs, validateIP(ip, sp.Child("clusterIP"))...)
	}
	for i, ip := range spec.GetClusterIps() {
		p := sp.Child("clusterIPs").Index(i)
		if ip != "None" {
			errs = append(errs, validateIP(ip, p)...)
		}
		if i == 0 && spec.GetClusterIp() != "" && ip != spec.GetClusterIp() {
			errs = append(errs, Invalid(p, ip, "must match `clusterIP`"))
		}
	}
	for i, ip := range spec.GetExternalIps() {
		errs = append(errs, validateIP(ip, sp.Child("externalIPs").Index(i))...)
	}

	if len(spec.GetPorts()) == 0 && typ != "ExternalName" && !isHeadless(spec) {
		errs = append(errs, Required(sp.Child("ports"), ""))
	}
	// With several ports each needs a name: endpoints and DNS SRV records refer to them by it.
	requireName := len(spec.GetPorts()) > 1
	names := map[string]bool{}
	nodePorts := map[string]bool{}
	// A port and protocol can be served once: kube-proxy keys its rules by them.
	servicePorts := map[string]bool{}
	for i, port := range spec.GetPorts() {
		pp := sp.Child("ports").Index(i)
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
		if key := fmt.Sprintf("%d/%s", port.GetPort(), port.GetProtocol()); servicePorts[key] {
			errs = append(errs, Duplicate(pp, key))
		} else {
			servicePorts[key] = true
		}
		errs = append(errs, validatePortNumOrName(port.GetTargetPort(), pp.Child("targetPort"))...)
		if np := port.GetNodePort(); np != 0 {
			switch {
			case np < 0 || np > 65535:
				errs = append(errs, Invalid(pp.Child("nodePort"), np, portRangeMsg))
			case typ == "ClusterIP" || typ == "ExternalName":
				errs = append(errs, Forbidden(pp.Child("nodePort"), "may not be used when `type` is '"+typ+"'"))
			case nodePorts[port.GetProtocol()+"/"+strconv.Itoa(int(np))]:
				errs = append(errs, Duplicate(pp.Child("nodePort"), np))
			default:
				nodePorts[port.GetProtocol()+"/"+strconv.Itoa(int(np))] = true
			}
		}
		if ap := port.GetAppProtocol(); ap != "" {
			errs = append(errs, validateLabelName(ap, pp.Child("appProtocol"))...)
		}
	}

	errs = append(errs, validateLabels(spec.GetSelector(), sp.Child("selector"))...)
	if sa := spec.GetSessionAffinity(); sa == "" {
		errs = append(errs, Required(sp.Child("sessionAffinity"), ""))
	} else {
		errs = append(errs, oneOf(sa, sessionAffinities, sp.Child("sessionAffinity"))...)
	}
	if p := spec.GetExternalTrafficPolicy(); p != "" {
		errs = append(errs, oneOf(p, trafficPolicies, sp.Child("externalTrafficPolicy"))...)
		if typ != "NodePort" && typ != "LoadBalancer" {
			errs = append(errs, Invalid(sp.Child("externalTrafficPolicy"), p, "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
		}
	}
	if p := spec.GetInternalTrafficPolicy(); p != "" {
		errs = append(errs, oneOf(p, trafficPolicies, sp.Child("internalTrafficPolicy"))...)
	}
	if p := spec.GetIpFamilyPolicy(); p != "" {
		errs = append(errs, oneOf(p, ipFamilyPolicies, sp.Child("ipFamilyPolicy"))...)
	}
	seen := map[string]bool{}
	for i, f := range spec.GetIpFamilies() {
		fp := sp.Child("ipFamilies").Index(i)
		if seen[f] {
			errs = append(errs, Duplicate(fp, f))
		}
		seen[f] = true
		errs = append(errs, oneOf(f, ipFamilies, fp)...)
	}
	return errs
}

// validateServiceUpdate keeps an allocated cluster IP: kube-proxy rules and clients' cached
// addresses point at it. Switching to or from ExternalName releases or allocates one, so
// that is allowed.
func validateServiceUpdate(svc, old *corev1.Service) ErrorList {
	oldIP, ip := old.GetSpec().GetClusterIp(), svc.GetSpec().GetClusterIp()
	if oldIP == "" || ip == oldIP {
		return nil
	}
	if svc.GetSpec().GetType() == "ExternalName" || old.GetSpec().GetType() == "ExternalName" {
		return nil
	}
	return ErrorList{Invalid(NewPath("spec", "clusterIP"), ip, "field is immutable")}
}

func validateServiceStatus(st *corev1.ServiceStatus, p *Path) ErrorList {
	var errs ErrorList
	ip := p.Child("loadBalancer", "ingress")
	for i, in := range st.GetLoadBalancer().GetIngress() {
		if in.GetIp() != "" {
			errs = append(errs, validateIP(in.GetIp(), ip.Index(i).Child("ip"))...)
		}
		if h := in.GetHostname(); h != "" {
			errs = append(errs, validateDNSSubdomain(h, ip.Index(i).Child("hostname"))...)
		}
	}
	return errs
}
