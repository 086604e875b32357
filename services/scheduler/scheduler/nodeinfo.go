package scheduler

import (
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// Well-known node labels.
const (
	labelHostname = "kubernetes.io/hostname"
	labelZone     = "topology.kubernetes.io/zone"
)

// NodeInfo is one node and what the pods on it (bound or assumed) take from it.
type NodeInfo struct {
	Name string
	// Node is nil while the cache knows pods on the node but not the node itself (its event
	// has not arrived yet, or it was deleted with pods still on it); such a node is never
	// chosen.
	Node            *corev1.Node
	Labels          map[string]string
	Taints          []*corev1.Taint
	Unschedulable   bool
	Allocatable     Resources
	AllocatablePods int64

	Requested        Resources
	NonZeroRequested Resources
	Pods             map[string]*PodInfo
	// ownerPods counts the pods of each controller on the node, for spreading.
	ownerPods map[string]int
}

func newNodeInfo(name string) *NodeInfo {
	return &NodeInfo{Name: name, Pods: map[string]*PodInfo{}, ownerPods: map[string]int{}}
}

// setNode records the node object's schedulable properties.
func (n *NodeInfo) setNode(node *corev1.Node) {
	n.Node = node
	n.Labels = node.GetMetadata().GetLabels()
	n.Taints = node.GetSpec().GetTaints()
	n.Unschedulable = node.GetSpec().GetUnschedulable()
	alloc := node.GetStatus().GetAllocatable()
	if len(alloc) == 0 {
		alloc = node.GetStatus().GetCapacity()
	}
	n.Allocatable, n.AllocatablePods = parseResourceList(alloc)
}

func (n *NodeInfo) addPod(pi *PodInfo) {
	n.Pods[pi.Key] = pi
	n.Requested.add(&pi.Requests)
	n.NonZeroRequested.add(&pi.NonZeroRequests)
	if pi.OwnerUID != "" {
		n.ownerPods[pi.OwnerUID]++
	}
}

func (n *NodeInfo) removePod(pi *PodInfo) {
	if _, ok := n.Pods[pi.Key]; !ok {
		return
	}
	delete(n.Pods, pi.Key)
	n.Requested.sub(&pi.Requests)
	n.NonZeroRequested.sub(&pi.NonZeroRequests)
	if pi.OwnerUID != "" {
		if n.ownerPods[pi.OwnerUID]--; n.ownerPods[pi.OwnerUID] <= 0 {
			delete(n.ownerPods, pi.OwnerUID)
		}
	}
}

// zone is the node's zone label ("" when it has none).
func (n *NodeInfo) zone() string { return n.Labels[labelZone] }
