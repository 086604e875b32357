package scheduler

import (
	"slices"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestFilters(t *testing.T) {
	three := func() []*corev1.Node {
		return []*corev1.Node{
			node("n1", "2", "4Gi", labelZone, "a", "disk", "ssd", "gen", "3"),
			node("n2", "4", "8Gi", labelZone, "b", "disk", "hdd", "gen", "5"),
			node("n3", "8", "16Gi", labelZone, "b", "gen", "7"),
		}
	}
	cordoned := three()
	cordoned[0].Spec.Unschedulable = true
	tainted := three()
	withTaint(tainted[0], "dedicated", "bar", "NoSchedule")
	withTaint(tainted[1], "gpu", "", "NoExecute")
	withTaint(tainted[2], "slow", "", "PreferNoSchedule")
	noPods := three()
	noPods[2].Status.Allocatable["pods"] = "1"
	withGPU := three()
	withGPU[1].Status.Allocatable["example.com/gpu"] = "2"

	tolerate := func(p *corev1.Pod, tols ...*corev1.Toleration) *corev1.Pod {
		p.Spec.Tolerations = tols
		return p
	}
	gpuPod := pod("g", "", "")
	gpuPod.Spec.Containers[0].Resources.Requests["example.com/gpu"] = "2"
	withSelector := pod("p", "", "")
	withSelector.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	byName := pod("p", "", "")
	byName.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []*corev1.NodeSelectorTerm{{MatchFields: []*corev1.NodeSelectorRequirement{req("metadata.name", "In", "n2")}}}}}}
	twoTerms := nodeAffinity(pod("p", "", ""), req("disk", "In", "ssd"))
	twoTerms.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = append(
		twoTerms.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms,
		&corev1.NodeSelectorTerm{MatchExpressions: []*corev1.NodeSelectorRequirement{req("gen", "Gt", "6")}})
	noTerms := pod("p", "", "")
	noTerms.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{}}}
	otherNS := antiAffinity(pod("p", "", "", "app", "web"), labelHostname, map[string]string{"app": "web"})

	cases := []struct {
		name    string
		nodes   []*corev1.Node
		placed  []*corev1.Pod
		pod     *corev1.Pod
		want    []string
		message string // when want is empty
	}{
		{name: "all fit", nodes: three(), pod: pod("p", "1", "1Gi"), want: []string{"n1", "n2", "n3"}},
		{name: "cordoned node refused", nodes: cordoned, pod: pod("p", "", ""), want: []string{"n2", "n3"}},
		{name: "cordon tolerated", nodes: cordoned, pod: tolerate(pod("p", "", ""),
			&corev1.Toleration{Key: "node.kubernetes.io/unschedulable", Operator: "Exists", Effect: "NoSchedule"}),
			want: []string{"n1", "n2", "n3"}},
		{name: "insufficient cpu", nodes: three(), pod: pod("p", "3", ""), want: []string{"n2", "n3"}},
		{name: "insufficient memory counts bound pods", nodes: three(),
			placed: []*corev1.Pod{on(pod("a", "", "7Gi"), "n2")}, pod: pod("p", "", "2Gi"), want: []string{"n1", "n3"}},
		{name: "too many pods", nodes: noPods, placed: []*corev1.Pod{on(pod("a", "", ""), "n3")}, pod: pod("p", "", ""),
			want: []string{"n1", "n2"}},
		{name: "extended resource", nodes: withGPU, pod: gpuPod, want: []string{"n2"}},
		{name: "fits nowhere", nodes: three(), pod: pod("p", "16", "32Gi"),
			message: "0/3 nodes are available: 3 Insufficient cpu, 3 Insufficient memory."},
		{name: "nodeSelector", nodes: three(), pod: withSelector, want: []string{"n1"}},
		{name: "affinity In", nodes: three(), pod: nodeAffinity(pod("p", "", ""), req(labelZone, "In", "b")), want: []string{"n2", "n3"}},
		{name: "affinity NotIn", nodes: three(), pod: nodeAffinity(pod("p", "", ""), req("disk", "NotIn", "ssd")), want: []string{"n2", "n3"}},
		{name: "affinity Exists", nodes: three(), pod: nodeAffinity(pod("p", "", ""), req("disk", "Exists")), want: []string{"n1", "n2"}},
		{name: "affinity DoesNotExist", nodes: three(), pod: nodeAffinity(pod("p", "", ""), req("disk", "DoesNotExist")), want: []string{"n3"}},
		{name: "affinity Gt", nodes: three(), pod: nodeAffinity(pod("p", "", ""), req("gen", "Gt", "4")), want: []string{"n2", "n3"}},
		{name: "affinity Lt", nodes: three(), pod: nodeAffinity(pod("p", "", ""), req("gen", "Lt", "4")), want: []string{"n1"}},
		{name: "affinity ANDs expressions", nodes: three(), pod: nodeAffinity(pod("p", "", ""), req(labelZone, "In", "b"), req("disk", "Exists")),
			want: []string{"n2"}},
		{name: "affinity ORs terms", nodes: three(), pod: twoTerms, want: []string{"n1", "n3"}},
		{name: "affinity matchFields name", nodes: three(), pod: byName, want: []string{"n2"}},
		{name: "affinity with no terms matches nothing", nodes: three(), pod: noTerms,
			message: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."},
		{name: "taints", nodes: tainted, pod: pod("p", "", ""), want: []string{"n3"}},
		{name: "toleration Equal", nodes: tainted, pod: tolerate(pod("p", "", ""),
			&corev1.Toleration{Key: "dedicated", Operator: "Equal", Value: "bar", Effect: "NoSchedule"}), want: []string{"n1", "n3"}},
		{name: "toleration wrong value", nodes: tainted, pod: tolerate(pod("p", "", ""),
			&corev1.Toleration{Key: "dedicated", Value: "baz"}), want: []string{"n3"}},
		{name: "toleration wrong effect", nodes: tainted, pod: tolerate(pod("p", "", ""),
			&corev1.Toleration{Key: "gpu", Operator: "Exists", Effect: "NoSchedule"}), want: []string{"n3"}},
		{name: "toleration Exists any effect", nodes: tainted, pod: tolerate(pod("p", "", ""),
			&corev1.Toleration{Key: "gpu", Operator: "Exists"}), want: []string{"n2", "n3"}},
		{name: "tolerate everything", nodes: tainted, pod: tolerate(pod("p", "", ""),
			&corev1.Toleration{Operator: "Exists"}), want: []string{"n1", "n2", "n3"}},
		{name: "anti-affinity by hostname", nodes: three(),
			placed: []*corev1.Pod{on(pod("a", "", "", "app", "web"), "n1")},
			pod:    antiAffinity(pod("p", "", "", "app", "web"), labelHostname, map[string]string{"app": "web"}),
			want:   []string{"n2", "n3"}},
		{name: "anti-affinity by zone", nodes: three(),
			placed: []*corev1.Pod{on(pod("a", "", "", "app", "web"), "n2")},
			pod:    antiAffinity(pod("p", "", "", "app", "web"), labelZone, map[string]string{"app": "web"}),
			want:   []string{"n1"}},
		{name: "anti-affinity ignores other namespaces", nodes: three(),
			placed: []*corev1.Pod{on(inNamespace(pod("a", "", "", "app", "web"), "other"), "n1")},
			pod:    otherNS, want: []string{"n1", "n2", "n3"}},
		{name: "existing pods' anti-affinity is symmetric", nodes: three(),
			placed: []*corev1.Pod{on(antiAffinity(pod("a", "", "", "app", "db"), labelZone, map[string]string{"app": "web"}), "n3")},
			pod:    pod("p", "", "", "app", "web"), want: []string{"n1"}},
		{name: "affinity to a placed pod's zone", nodes: three(),
			placed: []*corev1.Pod{on(pod("a", "", "", "app", "db"), "n3")},
			pod:    affinity(pod("p", "", "", "app", "web"), labelZone, map[string]string{"app": "db"}),
			want:   []string{"n2", "n3"}},
		{name: "affinity with no match anywhere", nodes: three(),
			pod:     affinity(pod("p", "", "", "app", "web"), labelZone, map[string]string{"app": "db"}),
			message: "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."},
		{name: "first pod of a self-affine group", nodes: three(),
			pod:  affinity(pod("p", "", "", "app", "web"), labelZone, map[string]string{"app": "web"}),
			want: []string{"n1", "n2", "n3"}},
		{name: "the issue's example", nodes: []*corev1.Node{
			node("small", "1", "4Gi"), withTaint(node("dedicated", "8", "16Gi"), "dedicated", "bar", "NoSchedule"), node("busy", "8", "16Gi")},
			placed:  []*corev1.Pod{on(pod("a", "", "", "app", "web"), "busy")},
			pod:     antiAffinity(pod("p", "2", "", "app", "web"), labelHostname, map[string]string{"app": "web"}),
			message: "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match pod anti-affinity rules, 1 node(s) had untolerated taint {dedicated: bar}."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := testCluster(t, tc.nodes, tc.placed...)
			got, msg := feasible(a, tc.pod)
			if !slices.Equal(got, tc.want) || msg != tc.message {
				t.Errorf("feasible = %v %q\nwant       %v %q", got, msg, tc.want, tc.message)
			}
		})
	}
}

func inNamespace(p *corev1.Pod, ns string) *corev1.Pod {
	p.Metadata.Namespace = ns
	return p
}

// Assumed pods take resources at once, so a burst of pods does not overfill a node before
// their bindings are seen; forgetting one gives them back.
func TestAssumedPodsCountUntilForgotten(t *testing.T) {
	a := testCluster(t, []*corev1.Node{node("n1", "2", "4Gi")})
	for i, want := range []string{"n1", "n1", ""} {
		res, err := a.schedule(NewPodInfo(pod("p"+string(rune('0'+i)), "1", "")))
		if res.node != want || (want == "" && err == nil) {
			t.Fatalf("pod %d: node %q err %v; want %q", i, res.node, err, want)
		}
	}
	a.cache.ForgetPod("default/p1")
	if res, err := a.schedule(NewPodInfo(pod("p3", "1", ""))); err != nil || res.node != "n1" {
		t.Fatalf("after forgetting p1: node %q err %v", res.node, err)
	}
	// A confirmed binding is not undone by a late Forget.
	a.cache.SetPod(on(pod("p3", "1", ""), "n1"))
	a.cache.ForgetPod("default/p3")
	if !a.cache.IsPlaced("default/p3") {
		t.Fatal("a pod seen bound was forgotten")
	}
}

// Changing a node's labels moves its pods between topology domains: both for the incoming
// pod's terms (counted from the label index) and for placed pods' terms (kept in groups).
func TestNodeLabelChangeMovesTopology(t *testing.T) {
	web := map[string]string{"app": "web"}
	for _, tc := range []struct {
		name          string
		placed, incom *corev1.Pod
	}{
		{"incoming pod's anti-affinity", pod("a", "", "", "app", "web"), antiAffinity(pod("p", "", "", "app", "web"), labelZone, web)},
		{"placed pod's anti-affinity", antiAffinity(pod("a", "", "", "app", "db"), labelZone, web), pod("p", "", "", "app", "web")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*corev1.Node{node("n1", "4", "4Gi", labelZone, "a"), node("n2", "4", "4Gi", labelZone, "b"),
				node("n3", "4", "4Gi", labelZone, "a")}
			a := testCluster(t, nodes, on(tc.placed, "n1"))
			if got, _ := feasible(a, tc.incom); !slices.Equal(got, []string{"n2"}) {
				t.Fatalf("before relabel: %v", got)
			}
			a.cache.SetNode(node("n1", "4", "4Gi", labelZone, "b"))
			if got, _ := feasible(a, tc.incom); !slices.Equal(got, []string{"n3"}) {
				t.Fatalf("after relabel n1 to zone b: %v; want [n3], the only node outside zone b", got)
			}
		})
	}
}

func TestNoNodes(t *testing.T) {
	a := testCluster(t, nil)
	if _, err := a.schedule(NewPodInfo(pod("p", "", ""))); err != ErrNoNodes {
		t.Fatalf("err = %v", err)
	}
	a.cache.SetNode(node("n1", "1", "1Gi"))
	a.cache.DeleteNode("n1")
	if a.cache.NodeCount() != 0 {
		t.Fatal("deleted node still counted")
	}
}

func TestBadConstraintsAreReported(t *testing.T) {
	a := testCluster(t, []*corev1.Node{node("n1", "1", "1Gi")})
	p := pod("p", "", "")
	p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []*corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}}}}
	if _, err := a.schedule(NewPodInfo(p)); err == nil {
		t.Fatal("an anti-affinity term without topologyKey was accepted")
	}
}
