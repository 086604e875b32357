package scheduler

import (
	"strconv"
	"sync"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/labels"
)

// Cache is the scheduler's view of the cluster: nodes, the pods bound to them and the pods it
// has assumed onto them while their binding is in flight. It also keeps the indexes that make
// inter-pod affinity cheap at thousands of nodes: pods by label, and the anti-affinity and
// preferred terms of existing pods grouped by term (replicas of one workload share one group).
//
// All methods are safe for concurrent use; the scheduling cycle holds the lock (Lock/Unlock)
// while it filters and scores one pod, so informer updates wait for at most one cycle.
type Cache struct {
	mu sync.Mutex

	nodes map[string]*NodeInfo
	// nodeList holds the names of nodes with a Node object, in the order they arrived; the
	// scheduler samples it from a rotating start. nodeIndex is each name's position.
	nodeList  []string
	nodeIndex map[string]int

	pods map[string]*cachedPod
	// byLabel indexes placed pods by "key=value" of each label.
	byLabel map[string]map[string]*PodInfo
	// antiGroups are the required anti-affinity terms of placed pods; prefGroups their
	// preferred affinity (positive weight) and anti-affinity (negative weight) terms.
	antiGroups map[string]*termGroup
	prefGroups map[string]*termGroup
	// zonePods counts each controller's placed pods per zone, for spreading.
	zonePods map[string]map[string]int
	// nsLabels are namespaces' labels, for namespace selectors of affinity terms.
	nsLabels map[string]map[string]string
	// termCounts remembers, for the affinity terms of pods being scheduled (by signature),
	// how many placed pods each matches per topology domain, and keeps the counts current as
	// pods come and go: replicas of one workload share a term, so each cycle reads counts
	// instead of walking every matching pod. termUse orders them for eviction.
	termCounts map[string]*termGroup
	termUse    int64
}

// maxTermCounts bounds the remembered terms (the least recently used go first).
const maxTermCounts = 1024

// cachedPod is a placed pod: bound (seen bound through the informer) or assumed (bound by
// this scheduler, not yet seen bound).
type cachedPod struct {
	info    *PodInfo
	assumed bool
}

// termGroup is one distinct affinity term of placed pods and, per value of its topology key,
// how many placed pods carry it in that topology domain.
type termGroup struct {
	term    *affinityTerm
	weight  int64 // for preferred terms: + affinity, - anti-affinity
	counts  map[string]int
	total   int
	lastUse int64 // termCounts only
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		nodes: map[string]*NodeInfo{}, nodeIndex: map[string]int{}, pods: map[string]*cachedPod{},
		byLabel: map[string]map[string]*PodInfo{}, antiGroups: map[string]*termGroup{},
		prefGroups: map[string]*termGroup{}, zonePods: map[string]map[string]int{},
		nsLabels: map[string]map[string]string{}, termCounts: map[string]*termGroup{},
	}
}

// Lock and Unlock hold the cache still for a scheduling cycle.
func (c *Cache) Lock()   { c.mu.Lock() }
func (c *Cache) Unlock() { c.mu.Unlock() }

// NodeCount is the number of nodes with a Node object.
func (c *Cache) NodeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.nodeList)
}

// PodCount is the number of placed (bound or assumed) pods.
func (c *Cache) PodCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pods)
}

// SetNode adds or updates a node.
func (c *Cache) SetNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := node.GetMetadata().GetName()
	n, ok := c.nodes[name]
	if !ok {
		n = newNodeInfo(name)
		c.nodes[name] = n
	}
	if _, listed := c.nodeIndex[name]; !listed {
		c.nodeIndex[name] = len(c.nodeList)
		c.nodeList = append(c.nodeList, name)
	}
	if labelsEqual(n.Labels, node.GetMetadata().GetLabels()) {
		n.setNode(node)
		return
	}
	// The node's labels place its pods in topology domains: move them with the labels.
	pods := make([]*PodInfo, 0, len(n.Pods))
	for _, pi := range n.Pods {
		pods = append(pods, pi)
		c.unindexPod(pi, n)
	}
	n.setNode(node)
	for _, pi := range pods {
		c.indexPod(pi, n)
	}
}

// DeleteNode removes a node; its pods stay accounted for until they are deleted themselves.
func (c *Cache) DeleteNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[name]
	if !ok {
		return
	}
	if i, listed := c.nodeIndex[name]; listed {
		last := c.nodeList[len(c.nodeList)-1]
		c.nodeList[i] = last
		c.nodeIndex[last] = i
		c.nodeList = c.nodeList[:len(c.nodeList)-1]
		delete(c.nodeIndex, name)
	}
	n.Node = nil
	if len(n.Pods) == 0 {
		delete(c.nodes, name)
	}
}

// SetPod records a pod bound to a node, as the informer reports it. A pod this scheduler
// assumed is confirmed by it.
func (c *Cache) SetPod(pod *corev1.Pod) {
	pi := NewPodInfo(pod)
	if pi.NodeName == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.pods[pi.Key]; ok {
		c.removePodLocked(old.info)
	}
	c.addPodLocked(pi, false)
}

// DeletePod forgets a pod, bound or assumed.
func (c *Cache) DeletePod(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.pods[key]; ok {
		c.removePodLocked(old.info)
	}
}

// assumePodLocked places pi on node before its binding is confirmed, so the next cycles
// count it. Call with the cache locked (from the scheduling cycle).
func (c *Cache) assumePodLocked(pi *PodInfo, node string) {
	if old, ok := c.pods[pi.Key]; ok {
		c.removePodLocked(old.info)
	}
	assumed := *pi
	assumed.NodeName = node
	c.addPodLocked(&assumed, true)
}

// ForgetPod undoes assumePodLocked after a failed binding; a pod confirmed meanwhile stays.
func (c *Cache) ForgetPod(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp, ok := c.pods[key]; ok && cp.assumed {
		c.removePodLocked(cp.info)
	}
}

// IsPlaced reports whether the cache holds the pod on a node (bound or assumed).
func (c *Cache) IsPlaced(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pods[key]
	return ok
}

// SetNamespace records a namespace's labels (for affinity terms' namespace selectors).
func (c *Cache) SetNamespace(name string, lbls map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !labelsEqual(c.nsLabels[name], lbls) {
		clear(c.termCounts) // terms with namespace selectors may match other pods now
	}
	c.nsLabels[name] = lbls
}

// DeleteNamespace forgets a namespace.
func (c *Cache) DeleteNamespace(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nsLabels, name)
	clear(c.termCounts)
}

// namespaceLabels reads a namespace's labels; call with the lock held.
func (c *Cache) namespaceLabels(ns string) map[string]string { return c.nsLabels[ns] }

func (c *Cache) addPodLocked(pi *PodInfo, assumed bool) {
	n, ok := c.nodes[pi.NodeName]
	if !ok {
		n = newNodeInfo(pi.NodeName)
		c.nodes[pi.NodeName] = n
	}
	c.pods[pi.Key] = &cachedPod{info: pi, assumed: assumed}
	n.addPod(pi)
	c.indexPod(pi, n)
}

func (c *Cache) removePodLocked(pi *PodInfo) {
	delete(c.pods, pi.Key)
	n, ok := c.nodes[pi.NodeName]
	if !ok {
		return
	}
	c.unindexPod(pi, n)
	n.removePod(pi)
	if n.Node == nil && len(n.Pods) == 0 {
		delete(c.nodes, n.Name)
	}
}

// indexPod adds a placed pod to the label index, the term groups and the zone counts.
func (c *Cache) indexPod(pi *PodInfo, n *NodeInfo) {
	for k, v := range pi.Labels {
		lk := labelKey(k, v)
		set := c.byLabel[lk]
		if set == nil {
			set = map[string]*PodInfo{}
			c.byLabel[lk] = set
		}
		set[pi.Key] = pi
	}
	c.forTerms(pi, func(groups map[string]*termGroup, t *affinityTerm, weight int64) {
		key := t.signature
		if weight != 0 {
			key = termWeightKey(t.signature, weight)
		}
		g := groups[key]
		if g == nil {
			g = &termGroup{term: t, weight: weight, counts: map[string]int{}}
			groups[key] = g
		}
		g.total++
		if v, ok := n.Labels[t.topologyKey]; ok {
			g.counts[v]++
		}
	})
	for _, g := range c.termCounts {
		if v, ok := n.Labels[g.term.topologyKey]; ok && g.term.matchesPod(pi.Namespace, pi.Labels, c.namespaceLabels) {
			g.counts[v]++
		}
	}
	if pi.OwnerUID != "" {
		z := n.zone()
		if c.zonePods[z] == nil {
			c.zonePods[z] = map[string]int{}
		}
		c.zonePods[z][pi.OwnerUID]++
	}
}

func (c *Cache) unindexPod(pi *PodInfo, n *NodeInfo) {
	for k, v := range pi.Labels {
		lk := labelKey(k, v)
		if set := c.byLabel[lk]; set != nil {
			delete(set, pi.Key)
			if len(set) == 0 {
				delete(c.byLabel, lk)
			}
		}
	}
	c.forTerms(pi, func(groups map[string]*termGroup, t *affinityTerm, weight int64) {
		key := t.signature
		if weight != 0 {
			key = termWeightKey(t.signature, weight)
		}
		g := groups[key]
		if g == nil {
			return
		}
		g.total--
		if v, ok := n.Labels[t.topologyKey]; ok {
			if g.counts[v]--; g.counts[v] <= 0 {
				delete(g.counts, v)
			}
		}
		if g.total <= 0 {
			delete(groups, key)
		}
	})
	for _, g := range c.termCounts {
		if v, ok := n.Labels[g.term.topologyKey]; ok && g.term.matchesPod(pi.Namespace, pi.Labels, c.namespaceLabels) {
			if g.counts[v]--; g.counts[v] <= 0 {
				delete(g.counts, v)
			}
		}
	}
	if pi.OwnerUID != "" {
		z := n.zone()
		if zc := c.zonePods[z]; zc != nil {
			if zc[pi.OwnerUID]--; zc[pi.OwnerUID] <= 0 {
				delete(zc, pi.OwnerUID)
			}
			if len(zc) == 0 {
				delete(c.zonePods, z)
			}
		}
	}
}

// forTerms calls fn for each term of pi that placed pods contribute to other pods'
// scheduling: required anti-affinity (filter) and preferred terms (score, signed weight).
func (c *Cache) forTerms(pi *PodInfo, fn func(groups map[string]*termGroup, t *affinityTerm, weight int64)) {
	for _, t := range pi.requiredAntiAffinity {
		fn(c.antiGroups, t, 0)
	}
	for _, t := range pi.preferredAffinity {
		fn(c.prefGroups, t, t.weight)
	}
	for _, t := range pi.preferredAntiAffinity {
		fn(c.prefGroups, t, -t.weight)
	}
}

// matchingPods calls fn for every placed pod that term t selects. It walks the smallest
// label-index bucket the selector pins down (an Equals or In requirement), or every pod.
func (c *Cache) matchingPods(t *affinityTerm, fn func(*PodInfo)) {
	var best []map[string]*PodInfo
	bestSize := -1
	for _, r := range t.selector.Requirements() {
		if r.Operator != labels.Equals && r.Operator != labels.DoubleEquals && r.Operator != labels.In {
			continue
		}
		var sets []map[string]*PodInfo
		size := 0
		for _, v := range r.Values {
			if set := c.byLabel[labelKey(r.Key, v)]; set != nil {
				sets = append(sets, set)
				size += len(set)
			}
		}
		if bestSize < 0 || size < bestSize {
			best, bestSize = sets, size
		}
	}
	visit := func(pi *PodInfo) {
		if t.matchesPod(pi.Namespace, pi.Labels, c.namespaceLabels) {
			fn(pi)
		}
	}
	if bestSize >= 0 {
		for _, set := range best {
			for _, pi := range set {
				visit(pi)
			}
		}
		return
	}
	for _, cp := range c.pods {
		visit(cp.info)
	}
}

func labelKey(k, v string) string              { return k + "=" + v }
func termWeightKey(sig string, w int64) string { return sig + "|" + strconv.FormatInt(w, 10) }

func labelsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
