package scheduler

// interPodState is what inter-pod affinity needs for one pod, computed once per cycle from
// the cache's indexes rather than per node.
type interPodState struct {
	// blocked are placed pods' required anti-affinity terms that select this pod, with the
	// domains (values of the term's topology key) where pods carrying them are: this pod may
	// not go there. The counts are the cache's own, read in place.
	blocked []termCounts
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
		st.blocked = append(st.blocked, termCounts{term: g.term, counts: g.counts})
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
// nodes (pods on nodes without the key are in no domain). The counts are remembered and kept
// current (see Cache.termCounts); callers must not change them.
func (c *Cache) countMatching(t *affinityTerm) termCounts {
	c.termUse++
	if g, ok := c.termCounts[t.signature]; ok {
		g.lastUse = c.termUse
		return termCounts{term: t, counts: g.counts}
	}
	g := &termGroup{term: t, counts: map[string]int{}, lastUse: c.termUse}
	c.matchingPods(t, func(p *PodInfo) {
		if n := c.nodes[p.NodeName]; n != nil {
			if v, ok := n.Labels[t.topologyKey]; ok {
				g.counts[v]++
			}
		}
	})
	if len(c.termCounts) >= maxTermCounts {
		var oldest string
		for sig, og := range c.termCounts {
			if oldest == "" || og.lastUse < c.termCounts[oldest].lastUse {
				oldest = sig
			}
		}
		delete(c.termCounts, oldest)
	}
	c.termCounts[t.signature] = g
	return termCounts{term: t, counts: g.counts}
}
