package scheduler

import (
	"fmt"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// Reasons a node is filtered out, in Kubernetes' words (they make up the Unschedulable
// message users see, e.g. "0/3 nodes are available: 1 Insufficient cpu, ...").
const (
	reasonUnschedulable        = "node(s) were unschedulable"
	reasonNodeName             = "node(s) didn't match the requested node name"
	reasonNodeAffinity         = "node(s) didn't match Pod's node affinity/selector"
	reasonTooManyPods          = "Too many pods"
	reasonAffinity             = "node(s) didn't match pod affinity rules"
	reasonAntiAffinity         = "node(s) didn't match pod anti-affinity rules"
	reasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
)

// taintUnschedulable is the taint Kubernetes' NodeUnschedulable filter checks tolerations
// against when a node is cordoned.
var taintUnschedulable = &corev1.Taint{Key: "node.kubernetes.io/unschedulable", Effect: "NoSchedule"}

// cycle is one pod's scheduling cycle: the pod, the cache (locked) and what was computed once
// for the pod before looking at nodes.
type cycle struct {
	c  *Cache
	pi *PodInfo
	ip *interPodState
}

// filter runs Kubernetes' filters in its order and returns the reasons of the first that
// refuses the node (nil: the pod fits).
func (cy *cycle) filter(n *NodeInfo) []string {
	if r := cy.nodeUnschedulable(n); r != nil {
		return r
	}
	if r := cy.nodeName(n); r != nil {
		return r
	}
	if r := cy.taintToleration(n); r != nil {
		return r
	}
	if r := cy.nodeAffinity(n); r != nil {
		return r
	}
	if r := cy.resourcesFit(n); r != nil {
		return r
	}
	return cy.interPodAffinity(n)
}

func (cy *cycle) nodeUnschedulable(n *NodeInfo) []string {
	if n.Unschedulable && !toleratesTaint(cy.pi.tolerations, taintUnschedulable) {
		return []string{reasonUnschedulable}
	}
	return nil
}

func (cy *cycle) nodeName(n *NodeInfo) []string {
	if want := cy.pi.Pod.GetSpec().GetNodeName(); want != "" && want != n.Name {
		return []string{reasonNodeName}
	}
	return nil
}

// taintToleration refuses a node with a NoSchedule or NoExecute taint the pod does not
// tolerate; PreferNoSchedule only lowers the node's score.
func (cy *cycle) taintToleration(n *NodeInfo) []string {
	for _, t := range n.Taints {
		if t.GetEffect() != "NoSchedule" && t.GetEffect() != "NoExecute" {
			continue
		}
		if !toleratesTaint(cy.pi.tolerations, t) {
			return []string{fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.GetKey(), t.GetValue())}
		}
	}
	return nil
}

// nodeAffinity checks spec.nodeSelector and the required node affinity (terms ORed).
func (cy *cycle) nodeAffinity(n *NodeInfo) []string {
	if cy.pi.nodeSelector != nil && !cy.pi.nodeSelector.Matches(n.Labels) {
		return []string{reasonNodeAffinity}
	}
	if terms := cy.pi.requiredNodeAffinity; terms != nil {
		for i := range terms {
			if terms[i].matches(n) {
				return nil
			}
		}
		return []string{reasonNodeAffinity}
	}
	return nil
}

// resourcesFit checks the pod count and every resource the pod requests against what is
// left of the node's allocatable, counting bound and assumed pods.
func (cy *cycle) resourcesFit(n *NodeInfo) []string {
	var reasons []string
	if int64(len(n.Pods))+1 > n.AllocatablePods {
		reasons = append(reasons, reasonTooManyPods)
	}
	req := &cy.pi.Requests
	if req.MilliCPU > 0 && n.Requested.MilliCPU+req.MilliCPU > n.Allocatable.MilliCPU {
		reasons = append(reasons, "Insufficient cpu")
	}
	if req.Memory > 0 && n.Requested.Memory+req.Memory > n.Allocatable.Memory {
		reasons = append(reasons, "Insufficient memory")
	}
	if req.EphemeralStorage > 0 && n.Requested.EphemeralStorage+req.EphemeralStorage > n.Allocatable.EphemeralStorage {
		reasons = append(reasons, "Insufficient ephemeral-storage")
	}
	for name, v := range req.Scalar {
		if v > 0 && n.Requested.Scalar[name]+v > n.Allocatable.Scalar[name] {
			reasons = append(reasons, "Insufficient "+name)
		}
	}
	return reasons
}

// interPodAffinity checks, in Kubernetes' order: existing pods' required anti-affinity
// against this pod, this pod's required affinity, then its required anti-affinity.
func (cy *cycle) interPodAffinity(n *NodeInfo) []string {
	ip := cy.ip
	if ip == nil {
		return nil
	}
	for _, tc := range ip.blocked {
		if v, ok := n.Labels[tc.term.topologyKey]; ok && tc.counts[v] > 0 {
			return []string{reasonExistingAntiAffinity}
		}
	}
	if len(ip.affinity) > 0 && !cy.satisfiesAffinity(n) {
		return []string{reasonAffinity}
	}
	for _, tc := range ip.antiAffinity {
		if v, ok := n.Labels[tc.term.topologyKey]; ok && tc.counts[v] > 0 {
			return []string{reasonAntiAffinity}
		}
	}
	return nil
}

// satisfiesAffinity: every required affinity term must have a matching pod in the node's
// topology domain, and the node must carry every term's topology key. The first pod of a
// group whose pods attract each other may go anywhere those keys exist, when no pod matches
// yet and the pod matches its own terms.
func (cy *cycle) satisfiesAffinity(n *NodeInfo) bool {
	ip := cy.ip
	podsExist := true
	for _, tc := range ip.affinity {
		v, ok := n.Labels[tc.term.topologyKey]
		if !ok {
			return false
		}
		if tc.counts[v] <= 0 {
			podsExist = false
		}
	}
	if podsExist {
		return true
	}
	return ip.noAffinityMatches && ip.matchesOwnAffinity
}
