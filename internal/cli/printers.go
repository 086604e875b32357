package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
)

const none = "<none>"

// newTabWriter aligns columns as kubectl does (minimum width 6, padding 3).
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
}

// ---- tables ----

// table describes the `get` columns of one kind. row returns the cells of headers followed by
// those of wide; name is the NAME cell (possibly prefixed with the kind).
type table struct {
	headers []string
	wide    []string
	row     func(obj scheme.Object, name string, now time.Time) []string
}

// tableFor returns the columns of kind k; kinds without their own columns get NAME AGE.
func tableFor(k *scheme.Kind) table {
	switch k.Kind {
	case "Pod":
		return table{[]string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}, []string{"IP", "NODE", "CONTROLLED BY"}, podRow}
	case "Deployment":
		return table{[]string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR"}, deploymentRow}
	case "ReplicaSet":
		return table{[]string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}, []string{"CONTAINERS", "IMAGES", "SELECTOR", "CONTROLLED BY"}, replicaSetRow}
	case "Service":
		return table{[]string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}, []string{"SELECTOR"}, serviceRow}
	case "Endpoints":
		return table{[]string{"NAME", "ENDPOINTS", "AGE"}, nil, endpointsRow}
	case "Node":
		return table{[]string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"},
			[]string{"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"}, nodeRow}
	case "Namespace":
		return table{[]string{"NAME", "STATUS", "AGE"}, nil, namespaceRow}
	case "Event":
		return table{[]string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"}, nil, eventRow}
	}
	return table{[]string{"NAME", "AGE"}, nil, func(obj scheme.Object, name string, now time.Time) []string {
		return []string{name, age(obj.GetMetadata().GetCreationTimestamp(), now)}
	}}
}

// tableOptions tune printTable.
type tableOptions struct {
	wide          bool
	withNamespace bool   // -A: a leading NAMESPACE column
	namePrefix    string // "deployment.apps/" when several kinds are printed
	noHeaders     bool   // rows only (the rows that `get -w` prints as changes arrive)
	now           time.Time
}

// printTable writes objs (all of kind k) as one aligned table.
func printTable(w io.Writer, k *scheme.Kind, objs []scheme.Object, opts tableOptions) error {
	t := tableFor(k)
	headers := t.headers
	if opts.wide {
		headers = append(append([]string(nil), headers...), t.wide...)
	}
	withNS := opts.withNamespace && k.Namespaced
	if withNS {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	tw := newTabWriter(w)
	if !opts.noHeaders {
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
	}
	for _, obj := range objs {
		md := obj.GetMetadata()
		cells := t.row(obj, opts.namePrefix+md.GetName(), opts.now)
		if !opts.wide {
			cells = cells[:len(t.headers)]
		}
		if withNS {
			cells = append([]string{md.GetNamespace()}, cells...)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
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
		podStatus(pod),
		fmt.Sprint(restarts),
		age(pod.GetMetadata().GetCreationTimestamp(), now),
		orNone(pod.GetStatus().GetPodIp()),
		orNone(pod.GetSpec().GetNodeName()),
		controlledBy(pod.GetMetadata()),
	}
}

// controlledBy is the object's controller as "Kind/name" (the wide column of pods and replica
// sets, so that `get rs,pods -o wide` shows which deployment and replica set own what).
func controlledBy(md *metav1.ObjectMeta) string {
	for _, ref := range md.GetOwnerReferences() {
		if ref.GetController() {
			return ref.GetKind() + "/" + ref.GetName()
		}
	}
	return none
}

// podStatus is kubectl's STATUS column: the most telling of the pod's phase or reason, its
// containers' waiting or terminated reasons, and Terminating for a pod being deleted.
func podStatus(pod *corev1.Pod) string {
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
		fmt.Sprintf("%d/%d", st.GetReadyReplicas(), desiredReplicas(d.GetSpec().Replicas)),
		fmt.Sprint(st.GetUpdatedReplicas()),
		fmt.Sprint(st.GetAvailableReplicas()),
		age(d.GetMetadata().GetCreationTimestamp(), now),
		names, images, formatLabelSelector(d.GetSpec().GetSelector()),
	}
}

func replicaSetRow(obj scheme.Object, name string, now time.Time) []string {
	rs := obj.(*appsv1.ReplicaSet)
	st := rs.GetStatus()
	names, images := containerNamesAndImages(rs.GetSpec().GetTemplate().GetSpec())
	return []string{
		name,
		fmt.Sprint(desiredReplicas(rs.GetSpec().Replicas)),
		fmt.Sprint(st.GetReplicas()),
		fmt.Sprint(st.GetReadyReplicas()),
		age(rs.GetMetadata().GetCreationTimestamp(), now),
		names, images, formatLabelSelector(rs.GetSpec().GetSelector()), controlledBy(rs.GetMetadata()),
	}
}

// desiredReplicas applies the API default of 1 to an unset replicas field.
func desiredReplicas(r *int32) int32 {
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
	return orNone(strings.Join(names, ",")), orNone(strings.Join(images, ","))
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
		orNone(spec.GetClusterIp()),
		serviceExternalIP(svc),
		servicePorts(spec.GetPorts()),
		age(svc.GetMetadata().GetCreationTimestamp(), now),
		orNone(formatLabels(spec.GetSelector())),
	}
}

// serviceExternalIP is kubectl's EXTERNAL-IP: what reaches the service from outside, by type.
func serviceExternalIP(svc *corev1.Service) string {
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
	return none
}

// servicePorts renders ports as "80/TCP,443:30443/TCP".
func servicePorts(ports []*corev1.ServicePort) string {
	var out []string
	for _, p := range ports {
		proto := protocolOrTCP(p.GetProtocol())
		if p.GetNodePort() != 0 {
			out = append(out, fmt.Sprintf("%d:%d/%s", p.GetPort(), p.GetNodePort(), proto))
		} else {
			out = append(out, fmt.Sprintf("%d/%s", p.GetPort(), proto))
		}
	}
	return orNone(strings.Join(out, ","))
}

func endpointsRow(obj scheme.Object, name string, now time.Time) []string {
	ep := obj.(*corev1.Endpoints)
	return []string{name, formatEndpoints(ep, 3), age(ep.GetMetadata().GetCreationTimestamp(), now)}
}

// formatEndpoints lists ready "ip:port" pairs, at most max of them (max < 0: all).
func formatEndpoints(ep *corev1.Endpoints, max int) string {
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
	return orNone(s)
}

func nodeRow(obj scheme.Object, name string, now time.Time) []string {
	n := obj.(*corev1.Node)
	info := n.GetStatus().GetNodeInfo()
	return []string{
		name,
		nodeStatus(n),
		nodeRoles(n.GetMetadata().GetLabels()),
		age(n.GetMetadata().GetCreationTimestamp(), now),
		info.GetKubeletVersion(),
		orNone(nodeAddress(n, "InternalIP")),
		orNone(nodeAddress(n, "ExternalIP")),
		orUnknown(info.GetOsImage()),
		orUnknown(info.GetKernelVersion()),
		orUnknown(info.GetContainerRuntimeVersion()),
	}
}

// nodeStatus is Ready, NotReady or Unknown from the Ready condition, with SchedulingDisabled
// appended for a cordoned node.
func nodeStatus(n *corev1.Node) string {
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

// nodeRoles reads the node-role.kubernetes.io/ROLE and kubernetes.io/role labels.
func nodeRoles(labels map[string]string) string {
	roles := map[string]bool{}
	for k, v := range labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles[r] = true
		} else if k == "kubernetes.io/role" && v != "" {
			roles[v] = true
		}
	}
	return orNone(strings.Join(sortedKeys(roles), ","))
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
	return []string{name, ns.GetStatus().GetPhase(), age(ns.GetMetadata().GetCreationTimestamp(), now)}
}

func eventRow(obj scheme.Object, _ string, now time.Time) []string {
	ev := obj.(*corev1.Event)
	ref := ev.GetInvolvedObject()
	return []string{
		eventLastSeen(ev, now),
		ev.GetType(),
		ev.GetReason(),
		strings.ToLower(ref.GetKind()) + "/" + ref.GetName(),
		ev.GetMessage(),
	}
}

// eventLastSeen is the age of the event's latest occurrence: lastTimestamp, else eventTime,
// else its creation.
func eventLastSeen(ev *corev1.Event, now time.Time) string {
	for _, ts := range []string{ev.GetLastTimestamp(), ev.GetEventTime(), ev.GetMetadata().GetCreationTimestamp()} {
		if ts != "" {
			return age(ts, now)
		}
	}
	return "<unknown>"
}

// ---- values ----

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// formatLabels renders a label map as "a=1,b=2", sorted by key.
func formatLabels(m map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// formatLabelSelector renders a selector in the label-selector syntax ("app=web,tier in (a,b)").
func formatLabelSelector(sel *metav1.LabelSelector) string {
	if sel == nil {
		return none
	}
	parts := []string{}
	if l := formatLabels(sel.GetMatchLabels()); l != "" {
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
		return none
	}
	return strings.Join(parts, ",")
}

// age renders the time since an RFC 3339 timestamp as kubectl does ("5s", "3m", "2d").
func age(ts string, now time.Time) string {
	if ts == "" {
		return "<unknown>"
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return "<unknown>"
	}
	return humanDuration(now.Sub(t))
}

// humanDuration is kubectl's short duration: precise when small, coarser as it grows.
func humanDuration(d time.Duration) string {
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

// ---- structured output ----

// printJSON writes objs as JSON indented like kubectl: the object itself when single, else a
// v1 List of them.
func printJSON(w io.Writer, objs []scheme.Object, single bool) error {
	data, err := marshalOutput(objs, single)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// printYAML is printJSON converted to YAML, so both show the same Kubernetes-shaped fields.
func printYAML(w io.Writer, objs []scheme.Object, single bool) error {
	data, err := marshalOutput(objs, single)
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(data)
	if err != nil {
		return fmt.Errorf("convert output to YAML: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// outputList is kubectl's List wrapper, fields in kubectl's (alphabetical) order.
type outputList struct {
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
	Kind       string            `json:"kind"`
	Metadata   struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

func marshalOutput(objs []scheme.Object, single bool) ([]byte, error) {
	var v any
	if single && len(objs) == 1 {
		raw, err := codec.Marshal(objs[0])
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", objs[0].GetMetadata().GetName(), err)
		}
		v = json.RawMessage(raw)
	} else {
		list := outputList{APIVersion: "v1", Kind: "List", Items: []json.RawMessage{}}
		for _, obj := range objs {
			raw, err := codec.Marshal(obj)
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", obj.GetMetadata().GetName(), err)
			}
			list.Items = append(list.Items, raw)
		}
		v = list
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<none>" and "&" in messages stay readable
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	return buf.Bytes(), nil
}
