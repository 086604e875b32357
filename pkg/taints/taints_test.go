package taints

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

func TestEvictionDelay(t *testing.T) {
	unreachable := &corev1.Taint{Key: Unreachable, Effect: NoExecute}
	notReady := &corev1.Taint{Key: NotReady, Effect: NoExecute}
	noSchedule := &corev1.Taint{Key: Unreachable, Effect: NoSchedule}
	tol := func(key string, secs *int64) *corev1.Toleration {
		return &corev1.Toleration{Key: key, Operator: "Exists", Effect: NoExecute, TolerationSeconds: secs}
	}
	for _, tc := range []struct {
		name   string
		tols   []*corev1.Toleration
		taints []*corev1.Taint
		want   time.Duration
	}{
		{"no NoExecute taint", nil, []*corev1.Taint{noSchedule}, Forever},
		{"untolerated", nil, []*corev1.Taint{unreachable}, 0},
		{"tolerated for 300 s", []*corev1.Toleration{tol(Unreachable, proto.Int64(300))}, []*corev1.Taint{unreachable}, 300 * time.Second},
		{"tolerated for ever", []*corev1.Toleration{tol(Unreachable, nil)}, []*corev1.Taint{unreachable}, Forever},
		{"shortest wins", []*corev1.Toleration{tol(Unreachable, proto.Int64(300)), tol(NotReady, proto.Int64(30))},
			[]*corev1.Taint{unreachable, notReady}, 30 * time.Second},
		{"one of two untolerated", []*corev1.Toleration{tol(Unreachable, nil)}, []*corev1.Taint{unreachable, notReady}, 0},
		{"negative is now", []*corev1.Toleration{tol(Unreachable, proto.Int64(-5))}, []*corev1.Taint{unreachable}, 0},
		{"empty key tolerates all", []*corev1.Toleration{{Operator: "Exists"}}, []*corev1.Taint{unreachable, notReady}, Forever},
	} {
		if got := EvictionDelay(tc.tols, tc.taints); got != tc.want {
			t.Errorf("%s: %v; want %v", tc.name, got, tc.want)
		}
	}
	if Tolerates([]*corev1.Toleration{{Key: "k", Value: "a"}}, &corev1.Taint{Key: "k", Value: "b", Effect: NoSchedule}) {
		t.Error("Equal toleration matched another value")
	}
}
