package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// BenchmarkAlgorithm measures one scheduling cycle (filter, score, assume) on a cache of
// 5,000 nodes, without the API: the scheduler's own share of the end-to-end benchmark.
func BenchmarkAlgorithm(b *testing.B) {
	for _, tc := range []struct {
		name string
		pod  func(i int) *corev1.Pod
	}{
		{"basic", func(i int) *corev1.Pod { return pod(fmt.Sprintf("p%d", i), "100m", "", "app", "basic") }},
		{"node-affinity", func(i int) *corev1.Pod {
			return nodeAffinity(pod(fmt.Sprintf("p%d", i), "100m", ""), req(labelZone, "In", "zone-1", "zone-2"))
		}},
		{"anti-affinity", func(i int) *corev1.Pod {
			return antiAffinity(pod(fmt.Sprintf("p%d", i), "100m", "", "color", "green"), labelHostname, map[string]string{"color": "green"})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := NewCache()
			for i := range 5000 {
				c.SetNode(node(fmt.Sprintf("node-%05d", i), "32", "128Gi", labelZone, fmt.Sprintf("zone-%d", i%4)))
			}
			a := &algorithm{cache: c, rnd: rand.New(rand.NewPCG(1, 2))}
			b.ResetTimer()
			for i := range b.N {
				if i%4000 == 3999 { // keep the cluster from filling up (anti-affinity: one per node)
					b.StopTimer()
					for j := i - 3999; j <= i; j++ {
						c.DeletePod(fmt.Sprintf("default/p%d", j))
					}
					b.StartTimer()
				}
				if _, err := a.schedule(NewPodInfo(tc.pod(i))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
