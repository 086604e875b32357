package validation

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/labels"
)

var (
	restartPolicies  = []string{"Always", "Never", "OnFailure"}
	dnsPolicies      = []string{"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"}
	pullPolicies     = []string{"Always", "IfNotPresent", "Never"}
	taintEffects     = []string{"NoExecute", "NoSchedule", "PreferNoSchedule"}
	podPhases        = []string{"Failed", "Pending", "Running", "Succeeded", "Unknown"}
	httpSchemes      = []string{"HTTP", "HTTPS"}
	nodeSelectorOps  = []string{"DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"}
	tolerationOps    = []string{"Equal", "Exists"}
	storageMediums   = []string{"", "Memory"}
	envVarNameRegexp = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	headerNameRegexp = regexp.MustCompile(`^[-A-Za-z0-9!#$%&'*+.^_` + "`" + `|~]+$`)
)

func validatePod(pod *corev1.Pod) ErrorList {
	errs := validateObjectMeta(pod.GetMetadata(), true, isDNS1123Subdomain, NewPath("metadata"))
	return append(errs, validatePodSpec(pod.GetSpec(), NewPath("spec"))...)
}

// validatePodSpec checks a pod spec, for a pod (path "spec") or a template ("spec.template.spec").
func validatePodSpec(spec *corev1.PodSpec, p *Path) ErrorList {
	if spec == nil {
		spec = &corev1.PodSpec{}
	}
	var errs ErrorList
	volumes, vErrs := validateVolumes(spec.GetVolumes(), p.Child("volumes"))
	errs = append(errs, vErrs...)

	if len(spec.GetContainers()) == 0 {
		errs = append(errs, Required(p.Child("containers"), ""))
	}
	// Container names share one namespace across init and regular containers: the kubelet and
	// `kubectl logs -c` address them by name alone.
	names := map[string]bool{}
	for i, c := range spec.GetInitContainers() {
		errs = append(errs, validateContainer(c, spec, volumes, names, false, p.Child("initContainers").Index(i))...)
	}
	for i, c := range spec.GetContainers() {
		errs = append(errs, validateContainer(c, spec, volumes, names, true, p.Child("containers").Index(i))...)
	}
	errs = append(errs, validateHostPortConflicts(spec.GetContainers(), p.Child("containers"))...)

	if rp := spec.GetRestartPolicy(); rp == "" {
		errs = append(errs, Required(p.Child("restartPolicy"), ""))
	} else {
		errs = append(errs, oneOf(rp, restartPolicies, p.Child("restartPolicy"))...)
	}
	if dp := spec.GetDnsPolicy(); dp == "" {
		errs = append(errs, Required(p.Child("dnsPolicy"), ""))
	} else {
		errs = append(errs, oneOf(dp, dnsPolicies, p.Child("dnsPolicy"))...)
	}
	if spec.TerminationGracePeriodSeconds != nil {
		errs = append(errs, validateNonNegative(spec.GetTerminationGracePeriodSeconds(), p.Child("terminationGracePeriodSeconds"))...)
	}
	if spec.ActiveDeadlineSeconds != nil {
		if v := spec.GetActiveDeadlineSeconds(); v < 1 || v > math.MaxInt32 {
			errs = append(errs, Invalid(p.Child("activeDeadlineSeconds"), v, fmt.Sprintf("must be between 1 and %d, inclusive", math.MaxInt32)))
		}
	}
	errs = append(errs, validateLabels(spec.GetNodeSelector(), p.Child("nodeSelector"))...)
	if n := spec.GetNodeName(); n != "" {
		errs = append(errs, validateDNSSubdomain(n, p.Child("nodeName"))...)
	}
	if n := spec.GetServiceAccountName(); n != "" {
		errs = append(errs, validateDNSSubdomain(n, p.Child("serviceAccountName"))...)
	}
	if n := spec.GetSchedulerName(); n != "" {
		errs = append(errs, validateDNSSubdomain(n, p.Child("schedulerName"))...)
	}
	if n := spec.GetPriorityClassName(); n != "" {
		errs = append(errs, validateDNSSubdomain(n, p.Child("priorityClassName"))...)
	}
	if n := spec.GetHostname(); n != "" {
		errs = append(errs, validateDNSLabel(n, p.Child("hostname"))...)
	}
	if n := spec.GetSubdomain(); n != "" {
		errs = append(errs, validateDNSLabel(n, p.Child("subdomain"))...)
	}
	errs = append(errs, validateTolerations(spec.GetTolerations(), p.Child("tolerations"))...)
	errs = append(errs, validateAffinity(spec.GetAffinity(), p.Child("affinity"))...)
	return errs
}

func validateContainer(c *corev1.Container, spec *corev1.PodSpec, volumes map[string]bool, names map[string]bool, regular bool, p *Path) ErrorList {
	var errs ErrorList
	switch name := c.GetName(); {
	case name == "":
		errs = append(errs, Required(p.Child("name"), ""))
	case len(labels.IsDNS1123Label(name)) > 0:
		errs = append(errs, validateDNSLabel(name, p.Child("name"))...)
	case names[name]:
		errs = append(errs, Duplicate(p.Child("name"), name))
	default:
		names[name] = true
	}

	image := c.GetImage()
	if strings.TrimSpace(image) == "" {
		errs = append(errs, Required(p.Child("image"), ""))
	} else if strings.TrimSpace(image) != image {
		errs = append(errs, Invalid(p.Child("image"), image, "must not have leading or trailing whitespace"))
	}
	if pp := c.GetImagePullPolicy(); pp == "" {
		errs = append(errs, Required(p.Child("imagePullPolicy"), ""))
	} else {
		errs = append(errs, oneOf(pp, pullPolicies, p.Child("imagePullPolicy"))...)
	}

	errs = append(errs, validateContainerPorts(c.GetPorts(), spec.GetHostNetwork(), p.Child("ports"))...)
	errs = append(errs, validateEnv(c.GetEnv(), p.Child("env"))...)
	errs = append(errs, validateResources(c.GetResources(), p.Child("resources"))...)
	errs = append(errs, validateVolumeMounts(c.GetVolumeMounts(), volumes, p.Child("volumeMounts"))...)

	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.GetLivenessProbe()}, {"readinessProbe", c.GetReadinessProbe()}, {"startupProbe", c.GetStartupProbe()}}
	for _, pr := range probes {
		if pr.probe == nil {
			continue
		}
		pp := p.Child(pr.name)
		if !regular {
			// Init containers run to completion one at a time; probes mean nothing there.
			errs = append(errs, Forbidden(pp, "may not be set for init containers"))
			continue
		}
		errs = append(errs, validateProbe(pr.probe, pp)...)
		// A liveness or startup probe passes on the first success: any other threshold is a mistake.
		if pr.name != "readinessProbe" && pr.probe.GetSuccessThreshold() != 1 {
			errs = append(errs, Invalid(pp.Child("successThreshold"), pr.probe.GetSuccessThreshold(), "must be 1"))
		}
	}
	return errs
}

// validateHostPortConflicts refuses two ports of a pod's containers on the same host port,
// protocol and host IP: the node can bind it once.
func validateHostPortConflicts(containers []*corev1.Container, p *Path) ErrorList {
	var errs ErrorList
	seen := map[string]bool{}
	for i, c := range containers {
		for j, port := range c.GetPorts() {
			if port.GetHostPort() == 0 {
				continue
			}
			key := fmt.Sprintf("%s/%s/%d", port.GetProtocol(), port.GetHostIp(), port.GetHostPort())
			if seen[key] {
				errs = append(errs, Duplicate(p.Index(i).Child("ports").Index(j).Child("hostPort"), key))
			}
			seen[key] = true
		}
	}
	return errs
}

func validateContainerPorts(ports []*corev1.ContainerPort, hostNetwork bool, p *Path) ErrorList {
	var errs ErrorList
	names := map[string]bool{}
	for i, port := range ports {
		ip := p.Index(i)
		if n := port.GetName(); n != "" {
			if msgs := isValidPortName(n); len(msgs) > 0 {
				for _, msg := range msgs {
					errs = append(errs, Invalid(ip.Child("name"), n, msg))
				}
			} else if names[n] {
				errs = append(errs, Duplicate(ip.Child("name"), n))
			} else {
				names[n] = true
			}
		}
		if cp := port.GetContainerPort(); cp == 0 {
			errs = append(errs, Required(ip.Child("containerPort"), ""))
		} else if !isValidPortNum(cp) {
			errs = append(errs, Invalid(ip.Child("containerPort"), cp, portRangeMsg))
		}
		if hp := port.GetHostPort(); hp != 0 {
			if !isValidPortNum(hp) {
				errs = append(errs, Invalid(ip.Child("hostPort"), hp, portRangeMsg))
			} else if hostNetwork && hp != port.GetContainerPort() {
				// With the host's network the container binds the host port itself.
				errs = append(errs, Invalid(ip.Child("hostPort"), hp, "must match `containerPort` when `hostNetwork` is true"))
			}
		}
		errs = append(errs, validateProtocol(port.GetProtocol(), ip.Child("protocol"))...)
		if h := port.GetHostIp(); h != "" {
			errs = append(errs, validateIP(h, ip.Child("hostIP"))...)
		}
	}
	return errs
}

func validateEnv(env []*corev1.EnvVar, p *Path) ErrorList {
	var errs ErrorList
	for i, ev := range env {
		ip := p.Index(i)
		if ev.GetName() == "" {
			errs = append(errs, Required(ip.Child("name"), ""))
		} else if !envVarNameRegexp.MatchString(ev.GetName()) {
			errs = append(errs, Invalid(ip.Child("name"), ev.GetName(),
				"a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"))
		}
		src := ev.GetValueFrom()
		if src == nil {
			continue
		}
		sp := ip.Child("valueFrom")
		if ev.GetValue() != "" {
			errs = append(errs, Invalid(sp, "", "may not be specified when `value` is not empty"))
		}
		n := 0
		if f := src.GetFieldRef(); f != nil {
			n++
			if f.GetFieldPath() == "" {
				errs = append(errs, Required(sp.Child("fieldRef", "fieldPath"), ""))
			}
		}
		for _, ks := range []struct {
			name string
			sel  *corev1.KeySelector
		}{{"secretKeyRef", src.GetSecretKeyRef()}, {"configMapKeyRef", src.GetConfigMapKeyRef()}} {
			if ks.sel == nil {
				continue
			}
			n++
			if ks.sel.GetName() == "" {
				errs = append(errs, Required(sp.Child(ks.name, "name"), ""))
			}
			if ks.sel.GetKey() == "" {
				errs = append(errs, Required(sp.Child(ks.name, "key"), ""))
			}
		}
		switch {
		case n == 0:
			errs = append(errs, Invalid(sp, "", "must specify one of: `fieldRef`, `configMapKeyRef` or `secretKeyRef`"))
		case n > 1:
			errs = append(errs, Invalid(sp, "", "may not have more than one field specified at a time"))
		}
	}
	return errs
}

// validateResources checks requests and limits; a request above its limit could never be
// honoured by the kubelet's cgroups.
func validateResources(r *corev1.ResourceRequirements, p *Path) ErrorList {
	limits, errs := parseQuantities(r.GetLimits(), true, p.Child("limits"))
	requests, reqErrs := parseQuantities(r.GetRequests(), true, p.Child("requests"))
	errs = append(errs, reqErrs...)
	for _, name := range sortedKeys(r.GetRequests()) {
		req, okReq := requests[name]
		lim, okLim := limits[name]
		if okReq && okLim && req.Cmp(lim) > 0 {
			errs = append(errs, Invalid(p.Child("requests").Key(name), r.GetRequests()[name],
				fmt.Sprintf("must be less than or equal to %s limit of %s", name, r.GetLimits()[name])))
		}
	}
	return errs
}

func validateProbe(pr *corev1.Probe, p *Path) ErrorList {
	var errs ErrorList
	var handlers []string
	if ex := pr.GetExec(); ex != nil {
		handlers = append(handlers, "exec")
		if len(ex.GetCommand()) == 0 {
			errs = append(errs, Required(p.Child("exec", "command"), ""))
		}
	}
	if h := pr.GetHttpGet(); h != nil {
		handlers = append(handlers, "httpGet")
		hp := p.Child("httpGet")
		if h.GetPath() == "" {
			errs = append(errs, Required(hp.Child("path"), ""))
		}
		errs = append(errs, validatePortNumOrName(h.GetPort(), hp.Child("port"))...)
		if h.GetScheme() != "" {
			errs = append(errs, oneOf(h.GetScheme(), httpSchemes, hp.Child("scheme"))...)
		}
		for i, hdr := range h.GetHttpHeaders() {
			if !headerNameRegexp.MatchString(hdr.GetName()) {
				errs = append(errs, Invalid(hp.Child("httpHeaders").Index(i).Child("name"), hdr.GetName(), "a valid HTTP header must consist of alphanumeric characters or '-'"))
			}
		}
	}
	if t := pr.GetTcpSocket(); t != nil {
		handlers = append(handlers, "tcpSocket")
		errs = append(errs, validatePortNumOrName(t.GetPort(), p.Child("tcpSocket", "port"))...)
	}
	switch {
	case len(handlers) == 0:
		errs = append(errs, Required(p, "must specify a handler type"))
	case len(handlers) > 1:
		errs = append(errs, Forbidden(p.Child(handlers[1]), "may not specify more than 1 handler type"))
	}
	errs = append(errs, validateNonNegative(int64(pr.GetInitialDelaySeconds()), p.Child("initialDelaySeconds"))...)
	// After defaulting these are at least 1; zero or less means the probe would never run or
	// never count.
	for _, f := range []struct {
		name string
		v    int32
	}{{"timeoutSeconds", pr.GetTimeoutSeconds()}, {"periodSeconds", pr.GetPeriodSeconds()},
		{"successThreshold", pr.GetSuccessThreshold()}, {"failureThreshold", pr.GetFailureThreshold()}} {
		if f.v < 1 {
			errs = append(errs, Invalid(p.Child(f.name), f.v, "must be greater than or equal to 1"))
		}
	}
	return errs
}

// validateVolumes checks the volumes and returns the set of valid names for volumeMounts.
func validateVolumes(vols []*corev1.Volume, p *Path) (map[string]bool, ErrorList) {
	var errs ErrorList
	names := map[string]bool{}
	for i, v := range vols {
		ip := p.Index(i)
		switch n := v.GetName(); {
		case n == "":
			errs = append(errs, Required(ip.Child("name"), ""))
		case len(labels.IsDNS1123Label(n)) > 0:
			errs = append(errs, validateDNSLabel(n, ip.Child("name"))...)
		case names[n]:
			errs = append(errs, Duplicate(ip.Child("name"), n))
		default:
			names[n] = true
		}
		errs = append(errs, validateVolumeSource(v, ip)...)
	}
	return names, errs
}

func validateVolumeSource(v *corev1.Volume, p *Path) ErrorList {
	var errs ErrorList
	var sources []string
	if hp := v.GetHostPath(); hp != nil {
		sources = append(sources, "hostPath")
		if hp.GetPath() == "" {
			errs = append(errs, Required(p.Child("hostPath", "path"), ""))
		}
	}
	if ed := v.GetEmptyDir(); ed != nil {
		sources = append(sources, "emptyDir")
		errs = append(errs, oneOf(ed.GetMedium(), storageMediums, p.Child("emptyDir", "medium"))...)
		if sl := ed.GetSizeLimit(); sl != "" {
			errs = append(errs, validateQuantity(sl, p.Child("emptyDir", "sizeLimit"))...)
		}
	}
	if s := v.GetSecret(); s != nil {
		sources = append(sources, "secret")
		if s.GetSecretName() == "" {
			errs = append(errs, Required(p.Child("secret", "secretName"), ""))
		}
	}
	if cm := v.GetConfigMap(); cm != nil {
		sources = append(sources, "configMap")
		if cm.GetName() == "" {
			errs = append(errs, Required(p.Child("configMap", "name"), ""))
		}
	}
	if pvc := v.GetPersistentVolumeClaim(); pvc != nil {
		sources = append(sources, "persistentVolumeClaim")
		if pvc.GetClaimName() == "" {
			errs = append(errs, Required(p.Child("persistentVolumeClaim", "claimName"), ""))
		}
	}
	switch {
	case len(sources) == 0:
		errs = append(errs, Required(p, "must specify a volume type"))
	case len(sources) > 1:
		errs = append(errs, Forbidden(p.Child(sources[1]), "may not specify more than 1 volume type"))
	}
	return errs
}

func validateVolumeMounts(mounts []*corev1.VolumeMount, volumes map[string]bool, p *Path) ErrorList {
	var errs ErrorList
	paths := map[string]bool{}
	for i, m := range mounts {
		ip := p.Index(i)
		if m.GetName() == "" {
			errs = append(errs, Required(ip.Child("name"), ""))
		} else if !volumes[m.GetName()] {
			errs = append(errs, NotFound(ip.Child("name"), m.GetName()))
		}
		if mp := m.GetMountPath(); mp == "" {
			errs = append(errs, Required(ip.Child("mountPath"), ""))
		} else if paths[mp] {
			errs = append(errs, Invalid(ip.Child("mountPath"), mp, "must be unique"))
		} else {
			paths[mp] = true
		}
		if sp := m.GetSubPath(); sp != "" {
			// A subPath escaping the volume would expose the host's filesystem.
			if path.IsAbs(sp) {
				errs = append(errs, Invalid(ip.Child("subPath"), sp, "must be a relative path"))
			} else if hasDotDot(sp) {
				errs = append(errs, Invalid(ip.Child("subPath"), sp, "must not contain '..'"))
			}
		}
	}
	return errs
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

func validateTolerations(tols []*corev1.Toleration, p *Path) ErrorList {
	var errs ErrorList
	for i, t := range tols {
		ip := p.Index(i)
		if t == nil {
			t = &corev1.Toleration{}
		}
		if t.GetKey() != "" {
			errs = append(errs, validateLabelName(t.GetKey(), ip.Child("key"))...)
		}
		// An empty key with Exists tolerates every taint; with Equal it would match nothing.
		if t.GetKey() == "" && t.GetOperator() != "Exists" {
			errs = append(errs, Invalid(ip.Child("operator"), t.GetOperator(),
				"operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		if t.TolerationSeconds != nil && t.GetEffect() != "NoExecute" {
			errs = append(errs, Invalid(ip.Child("effect"), t.GetEffect(),
				"effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
		switch t.GetOperator() {
		case "Equal", "": // empty means Equal
			if msgs := labels.IsValidLabelValue(t.GetValue()); len(msgs) > 0 {
				errs = append(errs, Invalid(ip.Child("value"), t.GetValue(), strings.Join(msgs, "; ")))
			}
		case "Exists":
			if t.GetValue() != "" {
				errs = append(errs, Invalid(ip.Child("value"), t.GetValue(), "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, NotSupported(ip.Child("operator"), t.GetOperator(), tolerationOps))
		}
		if e := t.GetEffect(); e != "" { // empty matches every effect
			errs = append(errs, oneOf(e, taintEffects, ip.Child("effect"))...)
		}
	}
	return errs
}

func validateAffinity(a *corev1.Affinity, p *Path) ErrorList {
	if a == nil {
		return nil
	}
	var errs ErrorList
	if na := a.GetNodeAffinity(); na != nil {
		np := p.Child("nodeAffinity")
		if req := na.GetRequiredDuringSchedulingIgnoredDuringExecution(); req != nil {
			errs = append(errs, validateNodeSelector(req, np.Child("requiredDuringSchedulingIgnoredDuringExecution"))...)
		}
		pp := np.Child("preferredDuringSchedulingIgnoredDuringExecution")
		for i, t := range na.GetPreferredDuringSchedulingIgnoredDuringExecution() {
			errs = append(errs, validateWeight(t.GetWeight(), pp.Index(i).Child("weight"))...)
			if t.GetPreference() == nil {
				errs = append(errs, Required(pp.Index(i).Child("preference"), ""))
				continue
			}
			errs = append(errs, validateNodeSelectorTerm(t.GetPreference(), pp.Index(i).Child("preference"))...)
		}
	}
	if pa := a.GetPodAffinity(); pa != nil {
		errs = append(errs, validatePodAffinityTerms(pa.GetRequiredDuringSchedulingIgnoredDuringExecution(),
			pa.GetPreferredDuringSchedulingIgnoredDuringExecution(), p.Child("podAffinity"))...)
	}
	if pa := a.GetPodAntiAffinity(); pa != nil {
		errs = append(errs, validatePodAffinityTerms(pa.GetRequiredDuringSchedulingIgnoredDuringExecution(),
			pa.GetPreferredDuringSchedulingIgnoredDuringExecution(), p.Child("podAntiAffinity"))...)
	}
	return errs
}

func validateWeight(w int32, p *Path) ErrorList {
	if w < 1 || w > 100 {
		return ErrorList{Invalid(p, w, "must be in the range 1-100")}
	}
	return nil
}

func validateNodeSelector(ns *corev1.NodeSelector, p *Path) ErrorList {
	tp := p.Child("nodeSelectorTerms")
	if len(ns.GetNodeSelectorTerms()) == 0 {
		return ErrorList{Required(tp, "must have at least one node selector term")}
	}
	var errs ErrorList
	for i, t := range ns.GetNodeSelectorTerms() {
		errs = append(errs, validateNodeSelectorTerm(t, tp.Index(i))...)
	}
	return errs
}

func validateNodeSelectorTerm(t *corev1.NodeSelectorTerm, p *Path) ErrorList {
	var errs ErrorList
	for i, r := range t.GetMatchExpressions() {
		ip := p.Child("matchExpressions").Index(i)
		vp := ip.Child("values")
		switch r.GetOperator() {
		case "In", "NotIn":
			if len(r.GetValues()) == 0 {
				errs = append(errs, Required(vp, "must be specified when `operator` is 'In' or 'NotIn'"))
			}
		case "Exists", "DoesNotExist":
			if len(r.GetValues()) > 0 {
				errs = append(errs, Forbidden(vp, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
			}
		case "Gt", "Lt":
			// The scheduler compares the node label numerically against this one value.
			if len(r.GetValues()) != 1 {
				errs = append(errs, Required(vp, "must be specified single value when `operator` is 'Lt' or 'Gt'"))
			} else if !isInteger(r.GetValues()[0]) {
				errs = append(errs, Invalid(vp.Index(0), r.GetValues()[0], "must be an integer when `operator` is 'Lt' or 'Gt'"))
			}
		default:
			errs = append(errs, NotSupported(ip.Child("operator"), r.GetOperator(), nodeSelectorOps))
		}
		errs = append(errs, validateLabelName(r.GetKey(), ip.Child("key"))...)
	}
	for i, r := range t.GetMatchFields() {
		ip := p.Child("matchFields").Index(i)
		// Only metadata.name is selectable by field, and only by exact value.
		switch r.GetOperator() {
		case "In", "NotIn":
			if len(r.GetValues()) != 1 {
				errs = append(errs, Required(ip.Child("values"), "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"))
			}
		default:
			errs = append(errs, Invalid(ip.Child("operator"), r.GetOperator(), "not a valid selector operator"))
		}
		if r.GetKey() != "metadata.name" {
			errs = append(errs, Invalid(ip.Child("key"), r.GetKey(), "not a valid field selector key"))
		}
	}
	return errs
}

func validatePodAffinityTerms(required []*corev1.PodAffinityTerm, preferred []*corev1.WeightedPodAffinityTerm, p *Path) ErrorList {
	var errs ErrorList
	for i, t := range required {
		errs = append(errs, validatePodAffinityTerm(t, p.Child("requiredDuringSchedulingIgnoredDuringExecution").Index(i))...)
	}
	for i, w := range preferred {
		ip := p.Child("preferredDuringSchedulingIgnoredDuringExecution").Index(i)
		errs = append(errs, validateWeight(w.GetWeight(), ip.Child("weight"))...)
		if w.GetPodAffinityTerm() == nil {
			errs = append(errs, Required(ip.Child("podAffinityTerm"), ""))
			continue
		}
		errs = append(errs, validatePodAffinityTerm(w.GetPodAffinityTerm(), ip.Child("podAffinityTerm"))...)
	}
	return errs
}

func validatePodAffinityTerm(t *corev1.PodAffinityTerm, p *Path) ErrorList {
	var errs ErrorList
	errs = append(errs, validateLabelSelector(t.GetLabelSelector(), p.Child("labelSelector"))...)
	errs = append(errs, validateLabelSelector(t.GetNamespaceSelector(), p.Child("namespaceSelector"))...)
	for i, ns := range t.GetNamespaces() {
		errs = append(errs, validateDNSLabel(ns, p.Child("namespaces").Index(i))...)
	}
	// The topology key names the node label that defines "together" (zone, host, ...).
	if t.GetTopologyKey() == "" {
		errs = append(errs, Required(p.Child("topologyKey"), "can not be empty"))
	} else {
		errs = append(errs, validateLabelName(t.GetTopologyKey(), p.Child("topologyKey"))...)
	}
	return errs
}

// ---- pod update ----

const podUpdateForbiddenMsg = "pod updates may not change fields other than `spec.containers[*].image`, " +
	"`spec.initContainers[*].image`, `spec.activeDeadlineSeconds` and `spec.tolerations` (only additions to existing tolerations)"

// validatePodUpdate enforces that a running pod's spec is (nearly) immutable: the kubelet
// only acts on image changes, a shorter deadline and new tolerations. Everything else would
// silently not take effect, so it is refused.
func validatePodUpdate(pod, old *corev1.Pod) ErrorList {
	var errs ErrorList
	sp := NewPath("spec")
	spec, oldSpec := pod.GetSpec(), old.GetSpec()
	if spec == nil {
		spec = &corev1.PodSpec{}
	}
	if oldSpec == nil {
		oldSpec = &corev1.PodSpec{}
	}

	if len(spec.GetContainers()) != len(oldSpec.GetContainers()) {
		errs = append(errs, Forbidden(sp.Child("containers"), "pod updates may not add or remove containers"))
	}
	if len(spec.GetInitContainers()) != len(oldSpec.GetInitContainers()) {
		errs = append(errs, Forbidden(sp.Child("initContainers"), "pod updates may not add or remove containers"))
	}

	if oldSpec.ActiveDeadlineSeconds != nil {
		if spec.ActiveDeadlineSeconds == nil {
			errs = append(errs, Invalid(sp.Child("activeDeadlineSeconds"), spec.ActiveDeadlineSeconds,
				"must not update from a positive integer to nil value"))
		} else if spec.GetActiveDeadlineSeconds() > oldSpec.GetActiveDeadlineSeconds() {
			errs = append(errs, Invalid(sp.Child("activeDeadlineSeconds"), spec.GetActiveDeadlineSeconds(),
				"must be less than or equal to previous value"))
		}
	}

	// A node name, once the pod is bound, is where it runs; it cannot move.
	nodeChanged := oldSpec.GetNodeName() != "" && spec.GetNodeName() != oldSpec.GetNodeName()
	if nodeChanged {
		errs = append(errs, Invalid(sp.Child("nodeName"), spec.GetNodeName(), "field is immutable once set"))
	}

	errs = append(errs, validateOnlyAddedTolerations(spec.GetTolerations(), oldSpec.GetTolerations(), sp.Child("tolerations"))...)

	// Compare the rest: copy the mutable fields from the new spec onto the old one.
	munged := proto.Clone(oldSpec).(*corev1.PodSpec)
	for i, c := range spec.GetContainers() {
		if i < len(munged.Containers) {
			munged.Containers[i].Image = c.GetImage()
		}
	}
	for i, c := range spec.GetInitContainers() {
		if i < len(munged.InitContainers) {
			munged.InitContainers[i].Image = c.GetImage()
		}
	}
	munged.ActiveDeadlineSeconds = spec.ActiveDeadlineSeconds
	munged.Tolerations = spec.GetTolerations()
	if nodeChanged {
		munged.NodeName = spec.GetNodeName() // already reported
	}
	// Container count changes are reported above; compare the containers only when they line up.
	if len(spec.GetContainers()) != len(oldSpec.GetContainers()) {
		munged.Containers = spec.Containers
	}
	if len(spec.GetInitContainers()) != len(oldSpec.GetInitContainers()) {
		munged.InitContainers = spec.InitContainers
	}
	if changed := changedFields(spec, munged); len(changed) > 0 {
		errs = append(errs, Forbidden(sp, podUpdateForbiddenMsg+"; changed: spec."+strings.Join(changed, ", spec.")))
	}
	return errs
}

// validateOnlyAddedTolerations lets tolerations be added (the taint manager and admission do)
// but not removed or changed, except tolerationSeconds.
func validateOnlyAddedTolerations(tols, old []*corev1.Toleration, p *Path) ErrorList {
	for _, o := range old {
		if o == nil {
			continue
		}
		found := false
		for _, t := range tols {
			if t == nil {
				continue
			}
			c := proto.Clone(o).(*corev1.Toleration)
			c.TolerationSeconds = t.TolerationSeconds
			if proto.Equal(c, t) {
				found = true
				break
			}
		}
		if !found {
			return ErrorList{Forbidden(p, "existing toleration can not be modified except its tolerationSeconds")}
		}
	}
	return nil
}

// changedFields names, by JSON name, the top-level fields that differ between a and b
// (messages of one type).
func changedFields(a, b proto.Message) []string {
	ra, rb := a.ProtoReflect(), b.ProtoReflect()
	fields := ra.Descriptor().Fields()
	var out []string
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		// Each field alone in an otherwise empty message, so proto.Equal compares just it.
		ma, mb := ra.Type().New(), rb.Type().New()
		if ra.Has(fd) {
			ma.Set(fd, ra.Get(fd))
		}
		if rb.Has(fd) {
			mb.Set(fd, rb.Get(fd))
		}
		if !proto.Equal(ma.Interface(), mb.Interface()) {
			out = append(out, fd.JSONName())
		}
	}
	return out
}

// ---- pod status ----

func validatePodStatus(st *corev1.PodStatus, p *Path) ErrorList {
	var errs ErrorList
	if ph := st.GetPhase(); ph != "" {
		errs = append(errs, oneOf(ph, podPhases, p.Child("phase"))...)
	}
	if ip := st.GetPodIp(); ip != "" {
		errs = append(errs, validateIP(ip, p.Child("podIP"))...)
	}
	if ip := st.GetHostIp(); ip != "" {
		errs = append(errs, validateIP(ip, p.Child("hostIP"))...)
	}
	for i, ip := range st.GetPodIps() {
		errs = append(errs, validateIP(ip.GetIp(), p.Child("podIPs").Index(i).Child("ip"))...)
	}
	for i, c := range st.GetConditions() {
		cp := p.Child("conditions").Index(i)
		if c.GetType() == "" {
			errs = append(errs, Required(cp.Child("type"), ""))
		}
	}
	for i, cs := range st.GetContainerStatuses() {
		cp := p.Child("containerStatuses").Index(i)
		if cs.GetName() == "" {
			errs = append(errs, Required(cp.Child("name"), ""))
		}
		errs = append(errs, validateNonNegative(int64(cs.GetRestartCount()), cp.Child("restartCount"))...)
	}
	return errs
}
