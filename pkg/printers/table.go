// Package printers holds the columns Kubernetes prints for each kind (kubectl get), shared
// by the apiserver's Table responses and the skiff CLI, and the value formats they use
// (ages, label selectors, ports).
package printers

import (
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// None is what an empty cell shows.
const None = "<none>"

// Column is one column of a kind's table, as Kubernetes' TableColumnDefinition: Priority 0
// columns are always shown, 1 only with -o wide.
type Column struct {
	Name        string
	Type        string // "string", "integer", "date"
	Format      string // "name" for the object's name
	Description string
	Priority    int32
}

// Table is a kind's columns and how to fill a row.
type Table struct {
	Columns []Column
	// Row returns one cell per column; name is the Name cell (possibly prefixed by the caller).
	Row func(obj scheme.Object, name string, now time.Time) []string
}

func columns(normal []string, wide ...string) []Column {
	var out []Column
	for _, n := range normal {
		c := Column{Name: n, Type: "string"}
		switch n {
		case "Name":
			c.Format, c.Description = "name", "Name must be unique within a namespace."
		case "Age":
			c.Description = "CreationTimestamp is a timestamp representing the server time when this object was created."
		}
		out = append(out, c)
	}
	for _, n := range wide {
		out = append(out, Column{Name: n, Type: "string", Priority: 1})
	}
	return out
}

// For returns the columns of kind k as Kubernetes prints them; kinds without their own get
// Name and Age.
func For(k *scheme.Kind) Table {
	switch k.Kind {
	case "Pod":
		return Table{columns([]string{"Name", "Ready", "Status", "Restarts", "Age"}, "IP", "Node", "Nominated Node", "Readiness Gates", "Controlled By"), podRow}
	case "Deployment":
		return Table{columns([]string{"Name", "Ready", "Up-to-date", "Available", "Age"}, "Containers", "Images", "Selector"), deploymentRow}
	case "ReplicaSet":
		return Table{columns([]string{"Name", "Desired", "Current", "Ready", "Age"}, "Containers", "Images", "Selector", "Controlled By"), replicaSetRow}
	case "Service":
		return Table{columns([]string{"Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"}, "Selector"), serviceRow}
	case "Endpoints":
		return Table{columns([]string{"Name", "Endpoints", "Age"}), endpointsRow}
	case "Node":
		return Table{columns([]string{"Name", "Status", "Roles", "Age", "Version"},
			"Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"), nodeRow}
	case "Namespace":
		return Table{columns([]string{"Name", "Status", "Age"}), namespaceRow}
	case "Event":
		return Table{columns([]string{"Last Seen", "Type", "Reason", "Object", "Message"}), eventRow}
	case "Lease":
		return Table{columns([]string{"Name", "Holder", "Age"}), leaseRow}
	}
	return Table{columns([]string{"Name", "Age"}), func(obj scheme.Object, name string, now time.Time) []string {
		return []string{name, Age(obj.GetMetadata().GetCreationTimestamp(), now)}
	}}
}

// ProtocolOrTCP is a port's protocol with Kubernetes' default.
func ProtocolOrTCP(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

func leaseRow(obj scheme.Object, name string, now time.Time) []string {
	l := obj.(*coordinationv1.Lease)
	return []string{name, OrNone(l.GetSpec().GetHolderIdentity()), Age(l.GetMetadata().GetCreationTimestamp(), now)}
}

func podRow(obj scheme.Object, name string, now time.Time) []string {
	pod := obj.(*corev1.Pod)
	ready, restarts := 0, int32(0)
	for _, cs := range pod.GetStatus().GetContainerStatuses() {
		if cs.GetReady() {
			ready++
		}
		restarts += cs.GetRestartCount()
	}
	return []string{
		name,
		fmt.Sprintf("%d/%d", ready, len(pod.GetSpec().GetContainers())),
		PodStatus(pod),
		fmt.Sprint(restarts),
		Age(pod.GetMetadata().GetCreationTimestamp(), now),
		OrNone(pod.GetStatus().GetPodIp()),
		OrNone(pod.GetSpec().GetNodeName()),
		None, // nominated node: Skiff's scheduler does not preempt
		None, // readiness gates: not modelled
		ControlledBy(pod.GetMetadata()),
	}
}

// ControlledBy is the object's controller as "Kind/name" (a wide column of pods and replica
// sets, so that `get rs,pods -o wide` shows which deployment and replica set own what).
func ControlledBy(md *metav1.ObjectMeta) string {
	for _, ref := range md.GetOwnerReferences() {
		if ref.GetController() {
			return ref.GetKind() + "/" + ref.GetName()
		}
	}
	return None
}

// PodStatus is kubectl's STATUS column: the most telling of the pod's phase or reason, its
// containers' waiting or terminated reasons, and Terminating for a pod being deleted.
func PodStatus(pod *corev1.Pod) string {
	st := pod.GetStatus()
	reason := st.GetPhase()
	if reason == "" {
		reason = "Pending"
	}
	if st.GetReason() != "" {
		reason = st.GetReason()
	}

	hasRunning := false
	cs := st.GetContainerStatuses()
	for i := len(cs) - 1; i >= 0; i-- {
		state := cs[i].GetState()
		switch {
		case state.GetWaiting() != nil && state.GetWaiting().GetReason() != "":
			reason = state.GetWaiting().GetReason()
		case state.GetTerminated() != nil && state.GetTerminated().GetReason() != "":
			reason = state.GetTerminated().GetReason()
		case state.GetTerminated() != nil && state.GetTerminated().GetSignal() != 0:
			reason = fmt.Sprintf("Signal:%d", state.GetTerminated().GetSignal())
		case state.GetTerminated() != nil:
			reason = fmt.Sprintf("ExitCode:%d", state.GetTerminated().GetExitCode())
		case cs[i].GetReady() && state.GetRunning() != nil:
			hasRunning = true
		}
	}
	// A pod with a finished container and a running one is Running.
	if reason == "Completed" && hasRunning {
		reason = "Running"
	}

	if pod.GetMetadata().GetDeletionTimestamp() != "" {
		if st.GetReason() == "NodeLost" {
			return "Unknown"
		}
		return "Terminating"
	}
	return reason
}

func deploymentRow(obj scheme.Object, name string, now time.Time) []string {
	d := obj.(*appsv1.Deployment)
	st := d.GetStatus()
	names, images := containerNamesAndImages(d.GetSpec().GetTemplate().GetSpec())
	return []string{
		name,
		fmt.Sprintf("%d/%d", st.GetReadyReplicas(), DesiredReplicas(d.GetSpec().Replicas)),
		fmt.Sprint(st.GetUpdatedReplicas()),
		fmt.Sprint(st.GetAvailableReplicas()),
		Age(d.GetMetadata().GetCreationTimestamp(), now),
		names, images, FormatLabelSelector(d.GetSpec().GetSelector()),
	}
}

func replicaSetRow(obj scheme.Object, name string, now time.Time) []string {
	rs := obj.(*appsv1.ReplicaSet)
	st := rs.GetStatus()
	names, images := containerNamesAndImages(rs.GetSpec().GetTemplate().GetSpec())
	return []string{
		name,
		fmt.Sprint(DesiredReplicas(rs.GetSpec().Replicas)),
		fmt.Sprint(st.GetReplicas()),
		fmt.Sprint(st.GetReadyReplicas()),
		Age(rs.GetMetadata().GetCreationTimestamp(), now),
		names, images, FormatLabelSelector(rs.GetSpec().GetSelector()), ControlledBy(rs.GetMetadata()),
	}
}

// DesiredReplicas applies the API default of 1 to an unset replicas field.
func DesiredReplicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func containerNamesAndImages(spec *corev1.PodSpec) (string, string) {
	var names, images []string
	for _, c := range spec.GetContainers() {
		names = append(names, c.GetName())
		images = append(images, c.GetImage())
	}
	return OrNone(strings.Join(names, ",")), OrNone(strings.Join(images, ","))
}

func serviceRow(obj scheme.Object, name string, now time.Time) []string {
	svc := obj.(*corev1.Service)
	spec := svc.GetSpec()
	typ := spec.GetType()
	if typ == "" {
		typ = "ClusterIP"
	}
	return []string{
		name,
		typ,
		OrNone(spec.GetClusterIp()),
		ServiceExternalIP(svc),
		ServicePorts(spec.GetPorts()),
		Age(svc.GetMetadata().GetCreationTimestamp(), now),
		OrNone(FormatLabels(spec.GetSelector())),
	}
}

// ServiceExternalIP is kubectl's EXTERNAL-IP: what reaches the service from outside, by type.
func ServiceExternalIP(svc *corev1.Service) string {
	spec := svc.GetSpec()
	ext := spec.GetExternalIps()
	switch spec.GetType() {
	case "ExternalName":
		return spec.GetExternalName()
	case "LoadBalancer":
		var ips []string
		for _, in := range svc.GetStatus().GetLoadBalancer().GetIngress() {
			if in.GetIp() != "" {
				ips = append(ips, in.GetIp())
			} else if in.GetHostname() != "" {
				ips = append(ips, in.GetHostname())
			}
		}
		ips = append(ips, ext...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	if len(ext) > 0 {
		return strings.Join(ext, ",")
	}
	return None
}

// ServicePorts renders ports as "80/TCP,443:30443/TCP".
func ServicePorts(ports []*corev1.ServicePort) string {
	var out []string
	for _, p := range ports {
		proto := ProtocolOrTCP(p.GetProtocol())
		if p.GetNodePort() != 0 {
			out = append(out, fmt.Sprintf("%d:%d/%s", p.GetPort(), p.GetNodePort(), proto))
		} else {
			out = append(out, fmt.Sprintf("%d/%s", p.GetPort(), proto))
		}
	}
	return OrNone(strings.Join(out, ","))
}

func endpointsRow(obj scheme.Object, name string, now time.Time) []string {
	ep := obj.(*corev1.Endpoints)
	return []string{name, FormatEndpoints(ep, 3), Age(ep.GetMetadata().GetCreationTimestamp(), now)}
}

// FormatEndpoints lists ready "ip:port" pairs, at most max of them (max < 0: all).
func FormatEndpoints(ep *corev1.Endpoints, max int) string {
	var list []string
	total := 0
	for _, ss := range ep.GetSubsets() {
		ports := ss.GetPorts()
		for _, a := range ss.GetAddresses() {
			if len(ports) == 0 {
				total++
				if max < 0 || len(list) < max {
					list = append(list, a.GetIp())
				}
				continue
			}
			for _, p := range ports {
				total++
				if max < 0 || len(list) < max {
					list = append(list, fmt.Sprintf("%s:%d", a.GetIp(), p.GetPort()))
				}
			}
		}
	}
	s := strings.Join(list, ",")
	if more := total - len(list); more > 0 {
		s += fmt.Sprintf(" + %d more...", more)
	}
	return OrNone(s)
}

func nodeRow(obj scheme.Object, name string, now time.Time) []string {
	n := obj.(*corev1.Node)
	info := n.GetStatus().GetNodeInfo()
	return []string{
		name,
		NodeStatus(n),
		NodeRoles(n.GetMetadata().GetLabels()),
		Age(n.GetMetadata().GetCreationTimestamp(), now),
		info.GetKubeletVersion(),
		OrNone(nodeAddress(n, "InternalIP")),
		OrNone(nodeAddress(n, "ExternalIP")),
		OrUnknown(info.GetOsImage()),
		OrUnknown(info.GetKernelVersion()),
		OrUnknown(info.GetContainerRuntimeVersion()),
	}
}

// NodeStatus is Ready, NotReady or Unknown from the Ready condition, with SchedulingDisabled
// appended for a cordoned node.
func NodeStatus(n *corev1.Node) string {
	status := "Unknown"
	for _, c := range n.GetStatus().GetConditions() {
		if c.GetType() == "Ready" {
			if c.GetStatus() == "True" {
				status = "Ready"
			} else {
				status = "NotReady"
			}
		}
	}
	if n.GetSpec().GetUnschedulable() {
		status += ",SchedulingDisabled"
	}
	return status
}

// NodeRoles reads the node-role.kubernetes.io/ROLE and kubernetes.io/role labels.
func NodeRoles(labels map[string]string) string {
	roles := map[string]bool{}
	for k, v := range labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles[r] = true
		} else if k == "kubernetes.io/role" && v != "" {
			roles[v] = true
		}
	}
	return OrNone(strings.Join(SortedKeys(roles), ","))
}

func nodeAddress(n *corev1.Node, typ string) string {
	for _, a := range n.GetStatus().GetAddresses() {
		if a.GetType() == typ {
			return a.GetAddress()
		}
	}
	return ""
}

func namespaceRow(obj scheme.Object, name string, now time.Time) []string {
	ns := obj.(*corev1.Namespace)
	return []string{name, ns.GetStatus().GetPhase(), Age(ns.GetMetadata().GetCreationTimestamp(), now)}
}

func eventRow(obj scheme.Object, _ string, now time.Time) []string {
	ev := obj.(*corev1.Event)
	ref := ev.GetInvolvedObject()
	return []string{
		EventLastSeen(ev, now),
		ev.GetType(),
		ev.GetReason(),
		strings.ToLower(ref.GetKind()) + "/" + ref.GetName(),
		ev.GetMessage(),
	}
}

// EventLastSeen is the age of the event's latest occurrence: lastTimestamp, else eventTime,
// else its creation.
func EventLastSeen(ev *corev1.Event, now time.Time) string {
	for _, ts := range []string{ev.GetLastTimestamp(), ev.GetEventTime(), ev.GetMetadata().GetCreationTimestamp()} {
		if ts != "" {
			return Age(ts, now)
		}
	}
	return "<unknown>"
}

func OrNone(s string) string {
	if s == "" {
		return None
	}
	return s
}

func OrUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// FormatLabels renders a label map as "a=1,b=2", sorted by key.
func FormatLabels(m map[string]string) string {
	var parts []string
	for _, k := range SortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// FormatLabelSelector renders a selector in the label-selector syntax ("app=web,tier in (a,b)").
func FormatLabelSelector(sel *metav1.LabelSelector) string {
	if sel == nil {
		return None
	}
	parts := []string{}
	if l := FormatLabels(sel.GetMatchLabels()); l != "" {
		parts = append(parts, l)
	}
	for _, r := range sel.GetMatchExpressions() {
		switch r.GetOperator() {
		case "In":
			parts = append(parts, fmt.Sprintf("%s in (%s)", r.GetKey(), strings.Join(r.GetValues(), ",")))
		case "NotIn":
			parts = append(parts, fmt.Sprintf("%s notin (%s)", r.GetKey(), strings.Join(r.GetValues(), ",")))
		case "Exists":
			parts = append(parts, r.GetKey())
		case "DoesNotExist":
			parts = append(parts, "!"+r.GetKey())
		}
	}
	if len(parts) == 0 {
		return None
	}
	return strings.Join(parts, ",")
}

// Age renders the time since an RFC 3339 timestamp as kubectl does ("5s", "3m", "2d").
func Age(ts string, now time.Time) string {
	if ts == "" {
		return "<unknown>"
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return "<unknown>"
	}
	return HumanDuration(now.Sub(t))
}

// HumanDuration is kubectl's short duration: precise when small, coarser as it grows.
func HumanDuration(d time.Duration) string {
	// Up to two seconds in the future is clock skew between machines: treat it as now.
	if s := int(d.Seconds()); s < -1 {
		return "<invalid>"
	} else if s < 0 {
		return "0s"
	} else if s < 60*2 {
		return fmt.Sprintf("%ds", s)
	}
	minutes := int(d / time.Minute)
	if minutes < 10 {
		if s := int(d/time.Second) % 60; s != 0 {
			return fmt.Sprintf("%dm%ds", minutes, s)
		}
		return fmt.Sprintf("%dm", minutes)
	} else if minutes < 60*3 {
		return fmt.Sprintf("%dm", minutes)
	}
	hours := int(d / time.Hour)
	switch {
	case hours < 8:
		if m := minutes % 60; m != 0 {
			return fmt.Sprintf("%dh%dm", hours, m)
		}
		return fmt.Sprintf("%dh", hours)
	case hours < 48:
		return fmt.Sprintf("%dh", hours)
	case hours < 24*8:
		if h := hours % 24; h != 0 {
			return fmt.Sprintf("%dd%dh", hours/24, h)
		}
		return fmt.Sprintf("%dd", hours/24)
	case hours < 24*365*2:
		return fmt.Sprintf("%dd", hours/24)
	case hours < 24*365*8:
		if dy := (hours / 24) % 365; dy != 0 {
			return fmt.Sprintf("%dy%dd", hours/24/365, dy)
		}
		return fmt.Sprintf("%dy", hours/24/365)
	}
	return fmt.Sprintf("%dy", hours/24/365)
}
