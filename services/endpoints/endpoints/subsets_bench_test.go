package endpoints_test

import (
	"fmt"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/services/endpoints/endpoints"
)

// BenchmarkSubsets is the reconcile's computation for a 1,000-pod service with a named port.
func BenchmarkSubsets(b *testing.B) {
	svc := webService()
	var ps []*corev1.Pod
	for i := range 1000 {
		p := newPod(fmt.Sprintf("web-%04d", i), "node-1", port("http", 8080), port("metrics", 9090))
		p.Metadata.Uid = fmt.Sprintf("uid-%d", i)
		p.Status = &corev1.PodStatus{PodIp: fmt.Sprintf("10.1.%d.%d", i/250, i%250), Phase: "Running",
			Conditions: []*corev1.PodCondition{{Type: "Ready", Status: "True"}}}
		ps = append(ps, p)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ss := endpoints.Subsets(svc, ps); len(ss) != 1 || len(ss[0].GetAddresses()) != 1000 {
			b.Fatalf("subsets %d", len(ss))
		}
	}
}
