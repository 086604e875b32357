package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

func newDescribeCommand(o *globalOptions) *cobra.Command {
	var selector string
	cmd := &cobra.Command{
		Use:     "describe KIND [NAME...] | KIND/NAME...",
		Short:   "Show details of objects and their recent events",
		Long:    "Show a readable view of objects, followed by the events recorded about them.\nWithout a name, every object of the kind (matching -l) is described.",
		Example: "  skiff describe pod web-7d9f-abcde\n  skiff describe deployment/web",
		RunE: func(cmd *cobra.Command, args []string) error {
			ra, err := parseResourceArgs(cmd, scheme.Default(), args)
			if err != nil {
				return err
			}
			if ra.byName && selector != "" {
				return usageErrorf(cmd, "name cannot be provided when a selector is specified")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return runDescribe(cmd.Context(), o, c, ra, selector)
		},
	}
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector of the objects to describe")
	return cmd
}

func runDescribe(ctx context.Context, o *globalOptions, c client.Interface, ra *resourceArgs, selector string) error {
	rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
	printed := 0
	for _, t := range ra.targets {
		objs, err := fetch(ctx, c, t, o.namespace, &getOptions{selector: selector, chunkSize: 500}, rep)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if printed > 0 {
				fmt.Fprintln(o.streams.Out)
			}
			printed++
			if err := describeObject(ctx, o, c, t.kind, obj); err != nil {
				return err
			}
		}
	}
	if printed == 0 && !ra.byName {
		noResourcesFound(o.streams.ErrOut, ra, o.namespace, false)
	}
	return rep.result()
}

// describer writes kubectl's describe layout: "Key:" and value columns aligned by a tabwriter,
// nested sections indented two spaces per level.
type describer struct {
	tw  *tabwriter.Writer
	now time.Time
}

func (d *describer) printf(level int, format string, args ...any) {
	fmt.Fprintf(d.tw, strings.Repeat("  ", level)+format, args...)
}

// multiline writes "title:" with the first value beside it and the others below it, aligned.
func (d *describer) multiline(level int, title string, values []string) {
	d.printf(level, "%s:\t", title)
	if len(values) == 0 {
		d.printf(0, "%s\n", none)
		return
	}
	for i, v := range values {
		if i > 0 {
			d.printf(level, "\t")
		}
		d.printf(0, "%s\n", v)
	}
}

func keyValues(m map[string]string) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// describeObject prints one object and then its events.
func describeObject(ctx context.Context, o *globalOptions, c client.Interface, k *scheme.Kind, obj scheme.Object) error {
	d := &describer{tw: tabwriter.NewWriter(o.streams.Out, 0, 8, 2, ' ', 0), now: o.now()}
	md := obj.GetMetadata()
	d.printf(0, "Name:\t%s\n", md.GetName())
	if k.Namespaced {
		d.printf(0, "Namespace:\t%s\n", md.GetNamespace())
	}
	d.multiline(0, "Labels", keyValues(md.GetLabels()))
	d.multiline(0, "Annotations", keyValues(md.GetAnnotations()))
	d.printf(0, "CreationTimestamp:\t%s\n", md.GetCreationTimestamp())
	if ts := md.GetDeletionTimestamp(); ts != "" {
		d.printf(0, "DeletionTimestamp:\t%s\n", ts)
	}
	for _, ref := range md.GetOwnerReferences() {
		if ref.GetController() {
			d.printf(0, "Controlled By:\t%s/%s\n", ref.GetKind(), ref.GetName())
		}
	}

	switch v := obj.(type) {
	case *corev1.Pod:
		describePod(d, v)
	case *appsv1.Deployment:
		describeDeployment(d, v)
	case *appsv1.ReplicaSet:
		describeReplicaSet(d, v)
	case *corev1.Service:
		var ep *corev1.Endpoints
		if k, err := c.Scheme().ForName("endpoints"); err == nil {
			// Missing endpoints just mean none yet: the service is still described.
			if obj, err := c.Get(ctx, k, md.GetNamespace(), md.GetName()); err == nil {
				ep, _ = obj.(*corev1.Endpoints)
			}
		}
		describeService(d, v, ep)
	case *corev1.Endpoints:
		describeEndpoints(d, v)
	case *corev1.Node:
		describeNode(d, v)
	case *corev1.Namespace:
		d.printf(0, "Status:\t%s\n", v.GetStatus().GetPhase())
	case *corev1.Event:
		describeEvent(d, v)
	}

	if k.Kind != "Event" {
		events, err := eventsFor(ctx, c, k, md)
		if err != nil {
			// The object itself is shown; missing events are worth a warning, not a failure.
			fmt.Fprintf(o.streams.ErrOut, "Warning: cannot list events: %v\n", err)
		} else {
			describeEvents(d, events)
		}
	}
	return d.tw.Flush()
}

func describePod(d *describer, pod *corev1.Pod) {
	spec, st := pod.GetSpec(), pod.GetStatus()
	node := orNone(spec.GetNodeName())
	if spec.GetNodeName() != "" && st.GetHostIp() != "" {
		node += "/" + st.GetHostIp()
	}
	d.printf(0, "Node:\t%s\n", node)
	if st.GetStartTime() != "" {
		d.printf(0, "Start Time:\t%s\n", st.GetStartTime())
	}
	d.printf(0, "Status:\t%s\n", podStatus(pod))
	if st.GetReason() != "" {
		d.printf(0, "Reason:\t%s\n", st.GetReason())
	}
	if st.GetMessage() != "" {
		d.printf(0, "Message:\t%s\n", st.GetMessage())
	}
	d.printf(0, "IP:\t%s\n", st.GetPodIp())
	statuses := map[string]*corev1.ContainerStatus{}
	for _, cs := range st.GetContainerStatuses() {
		statuses[cs.GetName()] = cs
	}
	if len(spec.GetInitContainers()) > 0 {
		d.printf(0, "Init Containers:\n")
		describeContainers(d, 1, spec.GetInitContainers(), nil)
	}
	d.printf(0, "Containers:\n")
	describeContainers(d, 1, spec.GetContainers(), statuses)
	d.printf(0, "Conditions:\n")
	if len(st.GetConditions()) == 0 {
		d.printf(1, "%s\n", none)
	} else {
		d.printf(1, "Type\tStatus\n")
		for _, c := range st.GetConditions() {
			d.printf(1, "%s\t%s\n", c.GetType(), c.GetStatus())
		}
	}
	if st.GetQosClass() != "" {
		d.printf(0, "QoS Class:\t%s\n", st.GetQosClass())
	}
	d.multiline(0, "Node-Selectors", keyValues(spec.GetNodeSelector()))
	var tols []string
	for _, t := range spec.GetTolerations() {
		tols = append(tols, formatToleration(t))
	}
	d.multiline(0, "Tolerations", tols)
}

// describeContainers lists containers with what matters to run them; statuses (nil for a
// template) add their current state.
func describeContainers(d *describer, level int, containers []*corev1.Container, statuses map[string]*corev1.ContainerStatus) {
	for _, c := range containers {
		d.printf(level, "%s:\n", c.GetName())
		l := level + 1
		d.printf(l, "Image:\t%s\n", c.GetImage())
		var ports []string
		for _, p := range c.GetPorts() {
			ports = append(ports, fmt.Sprintf("%d/%s", p.GetContainerPort(), protocolOrTCP(p.GetProtocol())))
		}
		if len(ports) <= 1 {
			d.printf(l, "Port:\t%s\n", orNone(strings.Join(ports, "")))
		} else {
			d.printf(l, "Ports:\t%s\n", strings.Join(ports, ", "))
		}
		if len(c.GetCommand()) > 0 {
			d.printf(l, "Command:\t%s\n", strings.Join(c.GetCommand(), " "))
		}
		if len(c.GetArgs()) > 0 {
			d.printf(l, "Args:\t%s\n", strings.Join(c.GetArgs(), " "))
		}
		if cs, ok := statuses[c.GetName()]; ok {
			d.printf(l, "State:\t%s\n", containerState(cs.GetState()))
			if cs.GetLastState().GetTerminated() != nil {
				d.printf(l, "Last State:\t%s\n", containerState(cs.GetLastState()))
			}
			d.printf(l, "Ready:\t%s\n", boolText(cs.GetReady()))
			d.printf(l, "Restart Count:\t%d\n", cs.GetRestartCount())
		}
		describeQuantities(d, l, "Limits", c.GetResources().GetLimits())
		describeQuantities(d, l, "Requests", c.GetResources().GetRequests())
		for _, p := range []struct {
			title string
			probe *corev1.Probe
		}{{"Liveness", c.GetLivenessProbe()}, {"Readiness", c.GetReadinessProbe()}, {"Startup", c.GetStartupProbe()}} {
			if p.probe != nil {
				d.printf(l, "%s:\t%s\n", p.title, formatProbe(p.probe))
			}
		}
		if len(c.GetEnv()) == 0 {
			d.printf(l, "Environment:\t%s\n", none)
		} else {
			d.printf(l, "Environment:\n")
			for _, e := range c.GetEnv() {
				val := e.GetValue()
				if e.GetValueFrom() != nil {
					val = "<set from a reference>"
				}
				d.printf(l+1, "%s:\t%s\n", e.GetName(), val)
			}
		}
	}
}

func describeQuantities(d *describer, level int, title string, q map[string]string) {
	if len(q) == 0 {
		return
	}
	d.printf(level, "%s:\n", title)
	for _, k := range sortedKeys(q) {
		d.printf(level+1, "%s:\t%s\n", k, q[k])
	}
}

func containerState(s *corev1.ContainerState) string {
	switch {
	case s.GetRunning() != nil:
		if at := s.GetRunning().GetStartedAt(); at != "" {
			return "Running (started " + at + ")"
		}
		return "Running"
	case s.GetWaiting() != nil:
		return strings.TrimSpace("Waiting " + s.GetWaiting().GetReason())
	case s.GetTerminated() != nil:
		t := s.GetTerminated()
		return fmt.Sprintf("Terminated %s (exit code %d)", t.GetReason(), t.GetExitCode())
	}
	return "Waiting"
}

func boolText(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// formatProbe is kubectl's one-line probe: "http-get http://:80/ delay=0s timeout=1s ...".
func formatProbe(p *corev1.Probe) string {
	var action string
	switch {
	case p.GetHttpGet() != nil:
		h := p.GetHttpGet()
		scheme := strings.ToLower(h.GetScheme())
		if scheme == "" {
			scheme = "http"
		}
		action = fmt.Sprintf("http-get %s://%s:%s%s", scheme, h.GetHost(), intOrString(h.GetPort()), h.GetPath())
	case p.GetTcpSocket() != nil:
		action = "tcp-socket " + p.GetTcpSocket().GetHost() + ":" + intOrString(p.GetTcpSocket().GetPort())
	case p.GetExec() != nil:
		action = "exec [" + strings.Join(p.GetExec().GetCommand(), " ") + "]"
	default:
		action = "unknown"
	}
	return fmt.Sprintf("%s delay=%ds timeout=%ds period=%ds #success=%d #failure=%d", action,
		p.GetInitialDelaySeconds(), p.GetTimeoutSeconds(), p.GetPeriodSeconds(), p.GetSuccessThreshold(), p.GetFailureThreshold())
}

func intOrString(v *metav1.IntOrString) string {
	if v == nil {
		return ""
	}
	if _, ok := v.GetValue().(*metav1.IntOrString_StrVal); ok {
		return v.GetStrVal()
	}
	return fmt.Sprint(v.GetIntVal())
}

func formatToleration(t *corev1.Toleration) string {
	s := t.GetKey()
	if t.GetOperator() != "Exists" && t.GetValue() != "" {
		s += "=" + t.GetValue()
	}
	if t.GetEffect() != "" {
		s += ":" + t.GetEffect()
	}
	if t.TolerationSeconds != nil {
		s += fmt.Sprintf(" for %ds", t.GetTolerationSeconds())
	}
	if s == "" {
		s = "op=Exists"
	}
	return s
}

func describeDeployment(d *describer, dep *appsv1.Deployment) {
	spec, st := dep.GetSpec(), dep.GetStatus()
	d.printf(0, "Selector:\t%s\n", formatLabelSelector(spec.GetSelector()))
	d.printf(0, "Replicas:\t%d desired | %d updated | %d total | %d available | %d unavailable\n",
		desiredReplicas(spec.Replicas), st.GetUpdatedReplicas(), st.GetReplicas(), st.GetAvailableReplicas(), st.GetUnavailableReplicas())
	strategy := spec.GetStrategy().GetType()
	if strategy == "" {
		strategy = "RollingUpdate"
	}
	d.printf(0, "StrategyType:\t%s\n", strategy)
	d.printf(0, "MinReadySeconds:\t%d\n", spec.GetMinReadySeconds())
	if ru := spec.GetStrategy().GetRollingUpdate(); ru != nil && strategy == "RollingUpdate" {
		d.printf(0, "RollingUpdateStrategy:\t%s max unavailable, %s max surge\n",
			orDefault(intOrString(ru.GetMaxUnavailable()), "25%"), orDefault(intOrString(ru.GetMaxSurge()), "25%"))
	}
	if spec.GetPaused() {
		d.printf(0, "Paused:\ttrue\n")
	}
	describePodTemplate(d, spec.GetTemplate())
	d.printf(0, "Conditions:\n")
	if len(st.GetConditions()) == 0 {
		d.printf(1, "%s\n", none)
	} else {
		d.printf(1, "Type\tStatus\tReason\n")
		d.printf(1, "----\t------\t------\n")
		for _, c := range st.GetConditions() {
			d.printf(1, "%s\t%s\t%s\n", c.GetType(), c.GetStatus(), c.GetReason())
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func describeReplicaSet(d *describer, rs *appsv1.ReplicaSet) {
	spec, st := rs.GetSpec(), rs.GetStatus()
	d.printf(0, "Selector:\t%s\n", formatLabelSelector(spec.GetSelector()))
	d.printf(0, "Replicas:\t%d current / %d desired\n", st.GetReplicas(), desiredReplicas(spec.Replicas))
	d.printf(0, "Pods Status:\t%d ready / %d available\n", st.GetReadyReplicas(), st.GetAvailableReplicas())
	describePodTemplate(d, spec.GetTemplate())
}

func describePodTemplate(d *describer, t *corev1.PodTemplateSpec) {
	d.printf(0, "Pod Template:\n")
	d.multiline(1, "Labels", keyValues(t.GetMetadata().GetLabels()))
	if a := t.GetMetadata().GetAnnotations(); len(a) > 0 {
		d.multiline(1, "Annotations", keyValues(a))
	}
	d.printf(1, "Containers:\n")
	describeContainers(d, 2, t.GetSpec().GetContainers(), nil)
}

func describeService(d *describer, svc *corev1.Service, ep *corev1.Endpoints) {
	spec := svc.GetSpec()
	d.printf(0, "Selector:\t%s\n", orNone(formatLabels(spec.GetSelector())))
	typ := spec.GetType()
	if typ == "" {
		typ = "ClusterIP"
	}
	d.printf(0, "Type:\t%s\n", typ)
	d.printf(0, "IP:\t%s\n", orNone(spec.GetClusterIp()))
	if len(spec.GetExternalIps()) > 0 {
		d.printf(0, "External IPs:\t%s\n", strings.Join(spec.GetExternalIps(), ","))
	}
	if typ == "ExternalName" {
		d.printf(0, "External Name:\t%s\n", spec.GetExternalName())
	}
	if len(spec.GetPorts()) == 0 {
		d.printf(0, "Port:\t%s\n", none)
	}
	for _, p := range spec.GetPorts() {
		name := orDefault(p.GetName(), "<unset>")
		proto := protocolOrTCP(p.GetProtocol())
		d.printf(0, "Port:\t%s\t%d/%s\n", name, p.GetPort(), proto)
		target := intOrString(p.GetTargetPort())
		if target == "" || target == "0" {
			target = fmt.Sprint(p.GetPort())
		}
		d.printf(0, "TargetPort:\t%s/%s\n", target, proto)
		if p.GetNodePort() != 0 {
			d.printf(0, "NodePort:\t%s\t%d/%s\n", name, p.GetNodePort(), proto)
		}
		d.printf(0, "Endpoints:\t%s\n", formatEndpoints(ep, -1))
	}
	d.printf(0, "Session Affinity:\t%s\n", orDefault(spec.GetSessionAffinity(), "None"))
}

func describeEndpoints(d *describer, ep *corev1.Endpoints) {
	d.printf(0, "Subsets:\n")
	if len(ep.GetSubsets()) == 0 {
		d.printf(1, "%s\n", none)
	}
	for _, ss := range ep.GetSubsets() {
		var ready, notReady []string
		for _, a := range ss.GetAddresses() {
			ready = append(ready, a.GetIp())
		}
		for _, a := range ss.GetNotReadyAddresses() {
			notReady = append(notReady, a.GetIp())
		}
		d.printf(1, "Addresses:\t%s\n", orNone(strings.Join(ready, ",")))
		d.printf(1, "NotReadyAddresses:\t%s\n", orNone(strings.Join(notReady, ",")))
		d.printf(1, "Ports:\n")
		d.printf(2, "Name\tPort\tProtocol\n")
		d.printf(2, "----\t----\t--------\n")
		for _, p := range ss.GetPorts() {
			d.printf(2, "%s\t%d\t%s\n", orDefault(p.GetName(), "<unset>"), p.GetPort(), protocolOrTCP(p.GetProtocol()))
		}
	}
}

func describeNode(d *describer, n *corev1.Node) {
	spec, st := n.GetSpec(), n.GetStatus()
	d.printf(0, "Roles:\t%s\n", nodeRoles(n.GetMetadata().GetLabels()))
	var taints []string
	for _, t := range spec.GetTaints() {
		s := t.GetKey()
		if t.GetValue() != "" {
			s += "=" + t.GetValue()
		}
		taints = append(taints, s+":"+t.GetEffect())
	}
	d.multiline(0, "Taints", taints)
	d.printf(0, "Unschedulable:\t%t\n", spec.GetUnschedulable())
	d.printf(0, "Conditions:\n")
	if len(st.GetConditions()) == 0 {
		d.printf(1, "%s\n", none)
	} else {
		d.printf(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
		d.printf(1, "----\t------\t-----------------\t------------------\t------\t-------\n")
		for _, c := range st.GetConditions() {
			d.printf(1, "%s\t%s\t%s\t%s\t%s\t%s\n", c.GetType(), c.GetStatus(), c.GetLastHeartbeatTime(),
				c.GetLastTransitionTime(), c.GetReason(), c.GetMessage())
		}
	}
	d.printf(0, "Addresses:\n")
	if len(st.GetAddresses()) == 0 {
		d.printf(1, "%s\n", none)
	}
	for _, a := range st.GetAddresses() {
		d.printf(1, "%s:\t%s\n", a.GetType(), a.GetAddress())
	}
	describeQuantities(d, 0, "Capacity", st.GetCapacity())
	describeQuantities(d, 0, "Allocatable", st.GetAllocatable())
	if info := st.GetNodeInfo(); info != nil {
		d.printf(0, "System Info:\n")
		d.printf(1, "Machine ID:\t%s\n", info.GetMachineId())
		d.printf(1, "Kernel Version:\t%s\n", info.GetKernelVersion())
		d.printf(1, "OS Image:\t%s\n", info.GetOsImage())
		d.printf(1, "Operating System:\t%s\n", info.GetOperatingSystem())
		d.printf(1, "Architecture:\t%s\n", info.GetArchitecture())
		d.printf(1, "Container Runtime Version:\t%s\n", info.GetContainerRuntimeVersion())
		d.printf(1, "Kubelet Version:\t%s\n", info.GetKubeletVersion())
	}
	if spec.GetPodCidr() != "" {
		d.printf(0, "PodCIDR:\t%s\n", spec.GetPodCidr())
	}
}

func describeEvent(d *describer, ev *corev1.Event) {
	ref := ev.GetInvolvedObject()
	d.printf(0, "Involved Object:\t%s/%s\n", ref.GetKind(), ref.GetName())
	d.printf(0, "Type:\t%s\n", ev.GetType())
	d.printf(0, "Reason:\t%s\n", ev.GetReason())
	d.printf(0, "Message:\t%s\n", ev.GetMessage())
	d.printf(0, "Source:\t%s\n", eventSource(ev))
	d.printf(0, "Count:\t%d\n", ev.GetCount())
	d.printf(0, "First Timestamp:\t%s\n", ev.GetFirstTimestamp())
	d.printf(0, "Last Timestamp:\t%s\n", ev.GetLastTimestamp())
}

// eventsFor lists the events about the object described by md: field selectors on the
// involved object, in its namespace (every namespace for a cluster-scoped object, whose events
// are recorded in some namespace of the recorder's choosing).
func eventsFor(ctx context.Context, c client.Interface, k *scheme.Kind, md *metav1.ObjectMeta) ([]*corev1.Event, error) {
	ek, err := c.Scheme().ForName("events")
	if err != nil {
		return nil, err
	}
	sel := "involvedObject.name=" + md.GetName() + ",involvedObject.kind=" + k.Kind
	if k.Namespaced {
		sel += ",involvedObject.namespace=" + md.GetNamespace()
	}
	list, err := client.ListAll(ctx, c, ek, md.GetNamespace(), client.ListOptions{FieldSelector: sel, Limit: 500})
	if err != nil {
		return nil, err
	}
	var out []*corev1.Event
	for _, obj := range list.Items {
		if ev, ok := obj.(*corev1.Event); ok {
			out = append(out, ev)
		}
	}
	// Oldest first, so the latest is at the bottom next to the prompt, as kubectl shows them.
	sort.SliceStable(out, func(i, j int) bool { return eventTime(out[i]).Before(eventTime(out[j])) })
	return out, nil
}

func eventTime(ev *corev1.Event) time.Time {
	for _, ts := range []string{ev.GetLastTimestamp(), ev.GetEventTime(), ev.GetMetadata().GetCreationTimestamp()} {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			return t
		}
	}
	return time.Time{}
}

func eventSource(ev *corev1.Event) string {
	src := ev.GetSource().GetComponent()
	if src == "" {
		src = ev.GetReportingComponent()
	}
	if h := ev.GetSource().GetHost(); h != "" {
		src += ", " + h
	}
	return src
}

func describeEvents(d *describer, events []*corev1.Event) {
	if len(events) == 0 {
		d.printf(0, "Events:\t%s\n", none)
		return
	}
	d.printf(0, "Events:\n")
	d.printf(1, "Type\tReason\tAge\tFrom\tMessage\n")
	d.printf(1, "----\t------\t----\t----\t-------\n")
	for _, ev := range events {
		ageText := eventLastSeen(ev, d.now)
		if ev.GetCount() > 1 && ev.GetFirstTimestamp() != "" {
			ageText = fmt.Sprintf("%s (x%d over %s)", ageText, ev.GetCount(), age(ev.GetFirstTimestamp(), d.now))
		}
		d.printf(1, "%s\t%s\t%s\t%s\t%s\n", ev.GetType(), ev.GetReason(), ageText, eventSource(ev), strings.TrimSpace(ev.GetMessage()))
	}
}
