package scheduler

import (
	"fmt"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// placements schedules pods one after another (each assumed before the next) and returns
// how many landed on each node.
func placements(t *testing.T, a *algorithm, pods ...*corev1.Pod) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range pods {
		res, err := a.schedule(NewPodInfo(p))
		if err != nil {
			t.Fatalf("schedule %s: %v", p.Metadata.Name, err)
		}
		out[res.node]++
	}
	return out
}

func TestScores(t *testing.T) {
	t.Run("least allocated prefers the emptier node", func(t *testing.T) {
		a := testCluster(t, []*corev1.Node{node("n1", "4", "8Gi"), node("n2", "4", "8Gi")},
			on(pod("busy", "3", "6Gi"), "n1"))
		if got := placements(t, a, pod("p", "500m", "512Mi")); got["n2"] != 1 {
			t.Fatalf("placed %v; want n2", got)
		}
	})
	t.Run("balanced allocation prefers even use", func(t *testing.T) {
		// Both nodes have the same free share on average; n2 would be used evenly.
		a := testCluster(t, []*corev1.Node{node("n1", "4", "4Gi"), node("n2", "4", "4Gi")},
			on(pod("cpu-heavy", "2", ""), "n1"), on(pod("even", "1", "1Gi"), "n2"))
		if got := placements(t, a, pod("p", "1", "1Gi")); got["n2"] != 1 {
			t.Fatalf("placed %v; want n2", got)
		}
	})
	t.Run("preferred node affinity", func(t *testing.T) {
		a := testCluster(t, []*corev1.Node{node("n1", "4", "8Gi", labelZone, "a"), node("n2", "4", "8Gi", labelZone, "b")},
			on(pod("busy", "2", "4Gi"), "n2"))
		p := pod("p", "", "")
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []*corev1.PreferredSchedulingTerm{{
			Weight: 50, Preference: &corev1.NodeSelectorTerm{MatchExpressions: []*corev1.NodeSelectorRequirement{req(labelZone, "In", "b")}}}}}}
		if got := placements(t, a, p); got["n2"] != 1 {
			t.Fatalf("placed %v; want n2 despite its load", got)
		}
	})
	t.Run("PreferNoSchedule taints are avoided", func(t *testing.T) {
		a := testCluster(t, []*corev1.Node{withTaint(node("n1", "4", "8Gi"), "slow", "", "PreferNoSchedule"), node("n2", "4", "8Gi")},
			on(pod("busy", "2", "4Gi"), "n2"))
		if got := placements(t, a, pod("p", "", "")); got["n2"] != 1 {
			t.Fatalf("placed %v; want n2", got)
		}
	})
	t.Run("a controller's pods spread over nodes", func(t *testing.T) {
		a := testCluster(t, []*corev1.Node{node("n1", "8", "16Gi"), node("n2", "8", "16Gi"), node("n3", "8", "16Gi")},
			on(ownedBy(pod("x0", "", ""), "rs-other"), "n1"), on(ownedBy(pod("x1", "", ""), "rs-other"), "n1"))
		var pods []*corev1.Pod
		for i := range 6 {
			pods = append(pods, ownedBy(pod(fmt.Sprintf("w%d", i), "", ""), "rs-web"))
		}
		got := placements(t, a, pods...)
		if got["n1"] != 2 || got["n2"] != 2 || got["n3"] != 2 {
			t.Fatalf("placed %v; want 2 per node", got)
		}
	})
	t.Run("preferred anti-affinity keeps away", func(t *testing.T) {
		a := testCluster(t, []*corev1.Node{node("n1", "8", "16Gi"), node("n2", "8", "16Gi")},
			on(pod("web", "", "", "app", "web"), "n2"), on(pod("big", "4", "8Gi"), "n1"))
		p := pod("p", "", "", "app", "cache")
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []*corev1.WeightedPodAffinityTerm{{
			Weight: 100, PodAffinityTerm: &corev1.PodAffinityTerm{LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				TopologyKey: labelHostname}}}}}
		if got := placements(t, a, p); got["n1"] != 1 {
			t.Fatalf("placed %v; want n1, away from the web pod despite its load", got)
		}
	})
	t.Run("required anti-affinity spreads replicas one per node", func(t *testing.T) {
		a := testCluster(t, []*corev1.Node{node("n1", "8", "16Gi"), node("n2", "8", "16Gi"), node("n3", "8", "16Gi")})
		var pods []*corev1.Pod
		for i := range 3 {
			pods = append(pods, antiAffinity(pod(fmt.Sprintf("w%d", i), "", "", "app", "web"), labelHostname, map[string]string{"app": "web"}))
		}
		got := placements(t, a, pods...)
		if len(got) != 3 {
			t.Fatalf("placed %v; want one per node", got)
		}
		if _, err := a.schedule(NewPodInfo(antiAffinity(pod("w3", "", "", "app", "web"), labelHostname, map[string]string{"app": "web"}))); err == nil {
			t.Fatal("a fourth replica found a node")
		}
	})
}

func TestResourceScores(t *testing.T) {
	n := newNodeInfo("n")
	n.setNode(node("n", "4", "8Gi"))
	n.addPod(NewPodInfo(pod("a", "2", "1Gi")))
	p := NewPodInfo(pod("p", "1", "1Gi"))
	// CPU would be 3/4 used, memory 2/8: a quarter of CPU and three quarters of memory left.
	if got := leastAllocated(n, p); got != 50 {
		t.Errorf("leastAllocated = %d; want (25+75)/2 = 50", got)
	}
	if got := balancedAllocation(n, p); got != 75 {
		t.Errorf("balancedAllocation = %d; want 100*(1-|0.75-0.25|/2) = 75", got)
	}
	// Pods without requests count Kubernetes' defaults (100m, 200Mi) for scoring only.
	empty := NewPodInfo(pod("e", "", ""))
	if empty.Requests.MilliCPU != 0 || empty.NonZeroRequests.MilliCPU != 100 || empty.NonZeroRequests.Memory != 200<<20 {
		t.Errorf("requests %+v, non-zero %+v", empty.Requests, empty.NonZeroRequests)
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	for _, tc := range []struct{ pct, nodes, want int }{
		{0, 50, 50}, {0, 100, 100}, {0, 1000, 420}, {0, 5000, 500}, {0, 10000, 500}, {0, 1500, 570},
		{30, 1000, 300}, {100, 5000, 5000}, {1, 5000, 100},
	} {
		if got := numFeasibleNodesToFind(tc.pct, tc.nodes); got != tc.want {
			t.Errorf("numFeasibleNodesToFind(%d%%, %d) = %d; want %d", tc.pct, tc.nodes, got, tc.want)
		}
	}
}

// In a large cluster a cycle stops after enough feasible nodes and the next one starts where
// it stopped, so every node gets its turn.
func TestSamplingRotates(t *testing.T) {
	var nodes []*corev1.Node
	for i := range 1000 {
		nodes = append(nodes, node(fmt.Sprintf("n%04d", i), "64", "256Gi"))
	}
	a := testCluster(t, nodes)
	seen := map[string]bool{}
	for i := range 10 {
		res, err := a.schedule(NewPodInfo(pod(fmt.Sprintf("p%d", i), "", "")))
		if err != nil {
			t.Fatal(err)
		}
		if res.evaluated != 420 {
			t.Fatalf("cycle %d evaluated %d nodes; want 420", i, res.evaluated)
		}
		seen[res.node] = true
	}
	if a.nextStart != 4200%1000 {
		t.Fatalf("next start %d; want %d", a.nextStart, 4200%1000)
	}
}
