package scheduler

// score rates each feasible node 0..100 per criterion and returns the weighted sums, as
// Kubernetes' default profile does: least allocated, balanced allocation, preferred node
// affinity, PreferNoSchedule taints, preferred inter-pod affinity and spreading of a
// controller's pods.
func (cy *cycle) score(nodes []*NodeInfo) []int64 {
	total := make([]int64, len(nodes))
	raw := make([]int64, len(nodes))
	pi := cy.pi

	for i, n := range nodes {
		total[i] += weightLeastAllocated*leastAllocated(n, pi) + weightBalanced*balancedAllocation(n, pi)
	}

	if len(pi.preferredNodeTerms) > 0 {
		for i, n := range nodes {
			raw[i] = 0
			for _, t := range pi.preferredNodeTerms {
				if t.term.matches(n) {
					raw[i] += t.weight
				}
			}
		}
		addNormalized(total, raw, weightNodeAffinity, false)
	}

	anyPreferNoSchedule := false
	for i, n := range nodes {
		raw[i] = 0
		for _, t := range n.Taints {
			if t.GetEffect() == "PreferNoSchedule" && !toleratesTaint(pi.tolerations, t) {
				raw[i]++
				anyPreferNoSchedule = true
			}
		}
	}
	if anyPreferNoSchedule {
		addNormalized(total, raw, weightTaintToleration, true)
	} else {
		for i := range total {
			total[i] += weightTaintToleration * maxNodeScore
		}
	}

	if ip := cy.ip; ip != nil && len(ip.preferred) > 0 {
		for i, n := range nodes {
			raw[i] = 0
			for key, values := range ip.preferred {
				if v, ok := n.Labels[key]; ok {
					raw[i] += values[v]
				}
			}
		}
		addMinMaxNormalized(total, raw, weightInterPod)
	}

	if pi.OwnerUID != "" {
		cy.addSpread(total, nodes)
	}
	return total
}

// leastAllocated favours nodes with more room left after placing the pod (CPU and memory
// equally), on non-zero requests so that pods without requests still spread.
func leastAllocated(n *NodeInfo, pi *PodInfo) int64 {
	cpu := fractionLeft(n.NonZeroRequested.MilliCPU+pi.NonZeroRequests.MilliCPU, n.Allocatable.MilliCPU)
	mem := fractionLeft(n.NonZeroRequested.Memory+pi.NonZeroRequests.Memory, n.Allocatable.Memory)
	return (cpu + mem) / 2
}

func fractionLeft(requested, capacity int64) int64 {
	if capacity <= 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * maxNodeScore / capacity
}

// balancedAllocation favours nodes whose CPU and memory would be used in equal proportion:
// 100 * (1 - the standard deviation of the two fractions).
func balancedAllocation(n *NodeInfo, pi *PodInfo) int64 {
	cpu := fraction(n.NonZeroRequested.MilliCPU+pi.NonZeroRequests.MilliCPU, n.Allocatable.MilliCPU)
	mem := fraction(n.NonZeroRequested.Memory+pi.NonZeroRequests.Memory, n.Allocatable.Memory)
	std := cpu - mem
	if std < 0 {
		std = -std
	}
	std /= 2 // the standard deviation of two values is half their distance
	return int64((1 - std) * maxNodeScore)
}

func fraction(requested, capacity int64) float64 {
	if capacity <= 0 {
		return 1
	}
	return min(float64(requested)/float64(capacity), 1)
}

// addNormalized scales raw to 0..100 by its maximum (reversed: fewer is better) and adds it
// with weight.
func addNormalized(total, raw []int64, weight int64, reverse bool) {
	var hi int64
	for _, v := range raw {
		hi = max(hi, v)
	}
	for i, v := range raw {
		s := int64(maxNodeScore)
		if hi > 0 {
			s = v * maxNodeScore / hi
			if reverse {
				s = maxNodeScore - s
			}
		} else if !reverse {
			s = 0
		}
		total[i] += weight * s
	}
}

// addMinMaxNormalized scales raw (which may be negative) to 0..100 between its minimum and
// maximum and adds it with weight.
func addMinMaxNormalized(total, raw []int64, weight int64) {
	lo, hi := raw[0], raw[0]
	for _, v := range raw {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi == lo {
		return
	}
	for i, v := range raw {
		total[i] += weight * (v - lo) * maxNodeScore / (hi - lo)
	}
}

// addSpread favours nodes, and zones, with fewer pods of the pod's controller, so a
// ReplicaSet's replicas spread out (zones weigh two thirds when nodes have zones).
func (cy *cycle) addSpread(total []int64, nodes []*NodeInfo) {
	owner := cy.pi.OwnerUID
	var maxNode, maxZone int
	haveZones := false
	for _, n := range nodes {
		maxNode = max(maxNode, n.ownerPods[owner])
		if z := n.zone(); z != "" {
			haveZones = true
			maxZone = max(maxZone, cy.c.zonePods[z][owner])
		}
	}
	for i, n := range nodes {
		s := int64(maxNodeScore)
		if maxNode > 0 {
			s = int64(maxNode-n.ownerPods[owner]) * maxNodeScore / int64(maxNode)
		}
		if haveZones {
			zs := int64(maxNodeScore)
			if z := n.zone(); z != "" && maxZone > 0 {
				zs = int64(maxZone-cy.c.zonePods[z][owner]) * maxNodeScore / int64(maxZone)
			}
			s = (s + 2*zs) / 3
		}
		total[i] += weightSpread * s
	}
}
