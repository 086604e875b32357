package admission

import (
	"context"
	"fmt"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

func TestDefaultTolerationSecondsAddsWhatIsMissing(t *testing.T) {
	pods, _ := scheme.Default().ForName("pods")
	nodes, _ := scheme.Default().ForName("nodes")
	plugin := DefaultTolerationSeconds{NotReady: 300, Unreachable: 120}
	describe := func(p *corev1.Pod) string {
		s := ""
		for _, t := range p.GetSpec().GetTolerations() {
			s += fmt.Sprintf("[%s %s %s %v]", t.GetKey(), t.GetOperator(), t.GetEffect(), t.TolerationSeconds != nil && *t.TolerationSeconds > 0)
			if t.TolerationSeconds != nil {
				s += fmt.Sprint(*t.TolerationSeconds)
			}
		}
		return s
	}
	for _, tc := range []struct {
		name string
		op   Operation
		sub  string
		tols []*corev1.Toleration
		want string
	}{
		{"none", Create, "", nil,
			"[node.kubernetes.io/not-ready Exists NoExecute true]300[node.kubernetes.io/unreachable Exists NoExecute true]120"},
		{"own unreachable kept", Create, "", []*corev1.Toleration{{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute"}},
			"[node.kubernetes.io/unreachable Exists NoExecute false][node.kubernetes.io/not-ready Exists NoExecute true]300"},
		{"tolerates everything", Create, "", []*corev1.Toleration{{Operator: "Exists"}}, "[ Exists  false]"},
		{"NoSchedule only does not count", Create, "", []*corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: "NoSchedule"}},
			"[node.kubernetes.io/not-ready Exists NoSchedule false][node.kubernetes.io/not-ready Exists NoExecute true]300[node.kubernetes.io/unreachable Exists NoExecute true]120"},
		{"update re-adds", Update, "", nil,
			"[node.kubernetes.io/not-ready Exists NoExecute true]300[node.kubernetes.io/unreachable Exists NoExecute true]120"},
		{"status untouched", Update, "status", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{Spec: &corev1.PodSpec{Tolerations: tc.tols}}
			if err := plugin.Admit(context.Background(), &Attributes{Kind: pods, Operation: tc.op, SubResource: tc.sub, Object: p}); err != nil {
				t.Fatal(err)
			}
			if got := describe(p); got != tc.want {
				t.Errorf("tolerations %s; want %s", got, tc.want)
			}
		})
	}
	n := &corev1.Node{}
	if err := plugin.Admit(context.Background(), &Attributes{Kind: nodes, Operation: Create, Object: n}); err != nil || n.Spec != nil {
		t.Errorf("a node was changed: %v %v", n, err)
	}
}
