package registry

import (
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// The per-kind rules of the generic verbs live here, as Kubernetes keeps them in each
// kind's strategy: what create resets, what update keeps, how a delete proceeds.

// prepareStatusForCreate resets status the way Kubernetes' create strategies do: a new pod
// is Pending, a namespace Active, workloads start with no status; nodes keep what they
// report.
func prepareStatusForCreate(obj scheme.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		o.Status = &corev1.PodStatus{Phase: "Pending"}
	case *corev1.Namespace:
		o.Status = &corev1.NamespaceStatus{Phase: namespaceActive}
	case *corev1.Node:
	default:
		clearField(obj, "status")
	}
}

// prepareForUpdate fills what an update may leave out because the server allocated it, as
// Kubernetes does: a Service keeps its cluster IPs and node ports when the new spec has
// none (kubectl replace of a manifest without them), unless it changes to or from a type
// without them.
func prepareForUpdate(next, cur scheme.Object) {
	svc, ok := next.(*corev1.Service)
	if !ok {
		return
	}
	old := cur.(*corev1.Service)
	if svc.GetSpec() == nil || old.GetSpec() == nil {
		return
	}
	spec, oldSpec := svc.Spec, old.Spec
	if spec.GetType() != "ExternalName" && oldSpec.GetType() != "ExternalName" {
		if spec.ClusterIp == "" {
			spec.ClusterIp = oldSpec.ClusterIp
		}
		if len(spec.ClusterIps) == 0 && len(oldSpec.ClusterIps) > 0 {
			spec.ClusterIps = append([]string(nil), oldSpec.ClusterIps...)
		}
	}
	if hasNodePorts(spec) && hasNodePorts(oldSpec) {
		// A port without a node port gets the one its namesake had, unless another port of
		// the new spec already uses it.
		used := map[int32]bool{}
		for _, p := range spec.Ports {
			used[p.NodePort] = true
		}
		byName := map[string]int32{}
		for _, p := range oldSpec.Ports {
			byName[p.Name] = p.NodePort
		}
		for _, p := range spec.Ports {
			if old := byName[p.Name]; p.NodePort == 0 && old != 0 && !used[old] {
				p.NodePort = old
				used[old] = true
			}
		}
	}
}

func hasNodePorts(spec *corev1.ServiceSpec) bool {
	return spec.GetType() == "NodePort" || spec.GetType() == "LoadBalancer"
}

// deletionGrace says how the deletion of obj proceeds. A graceful object is marked with a
// deletionTimestamp period seconds ahead and goes when that is confirmed (a delete with grace
// 0); any other object goes at once (or is marked, period 0, while finalizers hold it).
//
// Only a pod that runs on a node is deleted gracefully, with its own period or the request's
// (Kubernetes' pod strategy): an unbound or finished pod has no process to stop. A namespace
// is always marked first (Terminating): it goes only once it holds nothing.
func deletionGrace(obj scheme.Object, requested *int64) (period int64, graceful bool) {
	switch o := obj.(type) {
	case *corev1.Pod:
		period = o.GetSpec().GetTerminationGracePeriodSeconds()
		if requested != nil {
			period = *requested
		}
		if o.GetSpec().GetNodeName() == "" {
			period = 0
		}
		if phase := o.GetStatus().GetPhase(); phase == "Succeeded" || phase == "Failed" {
			period = 0
		}
		return period, true
	case *corev1.Namespace:
		return 0, true
	}
	return 0, false
}

// markDeleting records in the object's own fields that it is being deleted.
func markDeleting(obj scheme.Object) {
	if ns, ok := obj.(*corev1.Namespace); ok {
		if ns.Status == nil {
			ns.Status = &corev1.NamespaceStatus{}
		}
		ns.Status.Phase = namespaceTerminating
	}
}

// hasFinalizers reports whether something must still act before obj may go: its metadata
// finalizers, or a namespace's spec finalizers.
func hasFinalizers(obj scheme.Object) bool {
	if len(obj.GetMetadata().GetFinalizers()) > 0 {
		return true
	}
	ns, ok := obj.(*corev1.Namespace)
	return ok && len(ns.GetSpec().GetFinalizers()) > 0
}
