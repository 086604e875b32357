package scheduler

// interPodState is what inter-pod affinity needs for one pod, computed once per cycle from
// the cache's indexes rather than per node.
type interPodState struct {
	// blocked are the topology domains (key -> values) where placed pods' required
	// anti-affinity terms forbid this pod.
	blocked map[string]map[string]bool
	// affinity and antiAffinity are the pod's required terms with the number of matching
	// placed pods per topology value.
	affinity     []termCounts
	antiAffinity []termCounts
	// noAffinityMatches: no placed pod matches any required affinity term;
	// matchesOwnAffinity: the pod matches all its own required affinity terms.
	noAffinityMatches  bool
	matchesOwnAffinity bool
	// preferred is the score of each topology domain (key -> value -> score) from the pod's
	// preferred terms and placed pods' preferred terms that select this pod.
	preferred map[string]map[string]int64
}

type termCounts struct {
	term   *affinityTerm
	counts map[string]int
}

// interPodState returns nil when neither the pod nor any placed pod has inter-pod terms,
// which is the common case and costs nothing per node. Call with the lock held.
func (c *Cache) interPodState(pi *PodInfo) *interPodState {
	if !pi.hasInterPodConstraints() && len(c.antiGroups) == 0 && len(c.prefGroups) == 0 {
		return nil
	}
	st := &interPodState{}
	for _, g := range c.antiGroups {
		if len(g.counts) == 0 || !g.term.matchesPod(pi.Namespace, pi.Labels, c.namespaceLabels) {
			continue
		}
		if st.blocked == nil {
			st.blocked = map[string]map[string]bool{}
		}
		vals := st.blocked[g.term.topologyKey]
		if vals == nil {
			vals = map[string]bool{}
			st.blocked[g.term.topologyKey] = vals
		}
		for v := range g.counts {
			vals[v] = true
		}
	}
	st.noAffinityMatches, st.matchesOwnAffinity = true, true
	for _, t := range pi.requiredAffinity {
		tc := c.countMatching(t)
		if len(tc.counts) > 0 {
			st.noAffinityMatches = false
		}
		if !t.matchesPod(pi.Namespace, pi.Labels, c.namespaceLabels) {
			st.matchesOwnAffinity = false
		}
		st.affinity = append(st.affinity, tc)
	}
	for _, t := range pi.requiredAntiAffinity {
		st.antiAffinity = append(st.antiAffinity, c.countMatching(t))
	}

	addPreferred := func(key, value string, score int64) {
		if st.preferred == nil {
			st.preferred = map[string]map[string]int64{}
		}
		m := st.preferred[key]
		if m == nil {
			m = map[string]int64{}
			st.preferred[key] = m
		}
		m[value] += score
	}
	for _, t := range pi.preferredAffinity {
		for v, n := range c.countMatching(t).counts {
			addPreferred(t.topologyKey, v, t.weight*int64(n))
		}
	}
	for _, t := range pi.preferredAntiAffinity {
		for v, n := range c.countMatching(t).counts {
			addPreferred(t.topologyKey, v, -t.weight*int64(n))
		}
	}
	// Symmetry: placed pods that prefer (or prefer to avoid) pods like this one.
	for _, g := range c.prefGroups {
		if len(g.counts) == 0 || !g.term.matchesPod(pi.Namespace, pi.Labels, c.namespaceLabels) {
			continue
		}
		for v, n := range g.counts {
			addPreferred(g.term.topologyKey, v, g.weight*int64(n))
		}
	}
	return st
}

// countMatching counts the placed pods term t selects, per value of its topology key on their
// nodes (pods on nodes without the key are in no domain).
func (c *Cache) countMatching(t *affinityTerm) termCounts {
	tc := termCounts{term: t, counts: map[string]int{}}
	c.matchingPods(t, func(p *PodInfo) {
		if n := c.nodes[p.NodeName]; n != nil {
			if v, ok := n.Labels[t.topologyKey]; ok {
				tc.counts[v]++
			}
		}
	})
	return tc
}
