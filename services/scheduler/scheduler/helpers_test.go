package scheduler

import (
	"math/rand/v2"
	"sort"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// node builds a Node with cpu/memory/pods allocatable and labels (hostname added).
func node(name, cpu, mem string, lbls ...string) *corev1.Node {
	l := map[string]string{labelHostname: name}
	for i := 0; i+1 < len(lbls); i += 2 {
		l[lbls[i]] = lbls[i+1]
	}
	alloc := map[string]string{"cpu": cpu, "memory": mem, "pods": "110"}
	return &corev1.Node{Metadata: &metav1.ObjectMeta{Name: name, Labels: l},
		Spec:   &corev1.NodeSpec{},
		Status: &corev1.NodeStatus{Allocatable: alloc, Capacity: alloc}}
}

func withTaint(n *corev1.Node, key, value, effect string) *corev1.Node {
	n.Spec.Taints = append(n.Spec.Taints, &corev1.Taint{Key: key, Value: value, Effect: effect})
	return n
}

// pod builds a pending pod requesting cpu and memory ("" for none).
func pod(name, cpu, mem string, lbls ...string) *corev1.Pod {
	l := map[string]string{}
	for i := 0; i+1 < len(lbls); i += 2 {
		l[lbls[i]] = lbls[i+1]
	}
	req := map[string]string{}
	if cpu != "" {
		req["cpu"] = cpu
	}
	if mem != "" {
		req["memory"] = mem
	}
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Labels: l, Uid: "uid-" + name},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "img",
			Resources: &corev1.ResourceRequirements{Requests: req}}}}}
}

func on(p *corev1.Pod, nodeName string) *corev1.Pod {
	p.Spec.NodeName = nodeName
	return p
}

func ownedBy(p *corev1.Pod, uid string) *corev1.Pod {
	p.Metadata.OwnerReferences = []*metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Uid: uid, Controller: ptr(true)}}
	return p
}

func ptr[T any](v T) *T { return &v }

func antiAffinity(p *corev1.Pod, topologyKey string, matchLabels map[string]string) *corev1.Pod {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	p.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []*corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: matchLabels}, TopologyKey: topologyKey}}}
	return p
}

func affinity(p *corev1.Pod, topologyKey string, matchLabels map[string]string) *corev1.Pod {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	p.Spec.Affinity.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []*corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: matchLabels}, TopologyKey: topologyKey}}}
	return p
}

func nodeAffinity(p *corev1.Pod, exprs ...*corev1.NodeSelectorRequirement) *corev1.Pod {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	p.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchExpressions: exprs}}}}
	return p
}

func req(key, op string, values ...string) *corev1.NodeSelectorRequirement {
	return &corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

// testCluster is a cache filled with nodes and placed pods, and an algorithm over it.
func testCluster(t *testing.T, nodes []*corev1.Node, placed ...*corev1.Pod) *algorithm {
	t.Helper()
	c := NewCache()
	for _, n := range nodes {
		c.SetNode(n)
	}
	for _, p := range placed {
		if p.Spec.NodeName == "" {
			t.Fatalf("placed pod %s has no node", p.Metadata.Name)
		}
		c.SetPod(p)
	}
	return &algorithm{cache: c, rnd: rand.New(rand.NewPCG(1, 2))}
}

// feasible lists the nodes pod fits on, sorted, and the FitError message when none.
func feasible(a *algorithm, p *corev1.Pod) ([]string, string) {
	pi := NewPodInfo(p)
	c := a.cache
	c.Lock()
	defer c.Unlock()
	if pi.parseErr != nil {
		return nil, pi.parseErr.Error()
	}
	cy := &cycle{c: c, pi: pi, ip: c.interPodState(pi)}
	var out []string
	reasons := map[string]int{}
	for _, name := range c.nodeList {
		if rs := cy.filter(c.nodes[name]); rs != nil {
			for _, r := range rs {
				reasons[r]++
			}
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, (&FitError{NumAllNodes: len(c.nodeList), Reasons: reasons}).Error()
	}
	return out, ""
}
