package publisher

import (
	"testing"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestPodNodeReadsTheWire(t *testing.T) {
	cases := []*corev1.Pod{
		{},
		{Metadata: &metav1.ObjectMeta{Name: "unbound", Labels: map[string]string{"a": "b"}}},
		{Spec: &corev1.PodSpec{NodeName: "node-1", Containers: []*corev1.Container{{Name: "c", Image: "i"}}}},
		{Metadata: &metav1.ObjectMeta{Name: "p"}, Spec: &corev1.PodSpec{NodeName: "n.example.com", Hostname: "h"},
			Status: &corev1.PodStatus{Phase: "Running", HostIp: "10.0.0.1"}},
	}
	for _, pod := range cases {
		b, err := proto.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := podNode(b), pod.GetSpec().GetNodeName(); got != want {
			t.Errorf("podNode = %q, want %q (pod %v)", got, want, pod)
		}
	}
	if got := podNode([]byte{0xff, 0xff}); got != "" {
		t.Errorf("podNode of garbage = %q, want empty", got)
	}
}
