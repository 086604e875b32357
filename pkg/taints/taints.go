// Package taints holds Kubernetes' rules for taints and tolerations, shared by the scheduler
// (which nodes a pod may land on) and the node lifecycle controller (when a pod must leave a
// tainted node).
package taints

import (
	"time"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// Taint effects.
const (
	NoSchedule       = "NoSchedule"
	PreferNoSchedule = "PreferNoSchedule"
	NoExecute        = "NoExecute"
)

// Taints the node lifecycle controller puts on nodes whose kubelet stopped reporting
// (unreachable) or reports not ready, as Kubernetes names them.
const (
	NotReady    = "node.kubernetes.io/not-ready"
	Unreachable = "node.kubernetes.io/unreachable"
)

// Tolerates is Kubernetes' toleration matching: an empty effect tolerates every effect, an
// empty key with operator Exists tolerates every taint.
func Tolerates(tols []*corev1.Toleration, taint *corev1.Taint) bool {
	return matching(tols, taint) != nil
}

func matching(tols []*corev1.Toleration, taint *corev1.Taint) *corev1.Toleration {
	for _, t := range tols {
		if t.GetEffect() != "" && t.GetEffect() != taint.GetEffect() {
			continue
		}
		if t.GetKey() != "" && t.GetKey() != taint.GetKey() {
			continue
		}
		switch t.GetOperator() {
		case "Exists":
			return t
		case "", "Equal":
			if t.GetValue() == taint.GetValue() {
				return t
			}
		}
	}
	return nil
}

// Forever is what EvictionDelay answers for a pod that tolerates a node's NoExecute taints
// without a time limit.
const Forever = time.Duration(-1)

// EvictionDelay says how long a pod may stay on a node with these taints, as Kubernetes' taint
// eviction decides it: 0 when some NoExecute taint is not tolerated (evict now), the smallest
// tolerationSeconds of the tolerations used (0 if any is zero or negative), or Forever when
// none of them sets a limit. Taints other than NoExecute never evict.
func EvictionDelay(tols []*corev1.Toleration, nodeTaints []*corev1.Taint) time.Duration {
	min := Forever
	for _, taint := range nodeTaints {
		if taint.GetEffect() != NoExecute {
			continue
		}
		t := matching(tols, taint)
		if t == nil {
			return 0
		}
		if t.TolerationSeconds == nil {
			continue
		}
		d := time.Duration(max(t.GetTolerationSeconds(), 0)) * time.Second
		if min == Forever || d < min {
			min = d
		}
	}
	return min
}
