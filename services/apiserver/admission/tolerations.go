package admission

import (
	"context"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/taints"
)

// DefaultTolerationSecondsDefault is Kubernetes' default for both tolerations (five minutes).
const DefaultTolerationSecondsDefault = int64(300)

// DefaultTolerationSeconds is Kubernetes' DefaultTolerationSeconds admission plugin: a pod
// created without a toleration of the node.kubernetes.io/not-ready or .../unreachable NoExecute
// taint gets one for NotReady or Unreachable seconds, so that a pod on a node that stops
// answering is evicted (and replaced elsewhere by its controller) after that long, not at once
// and not never.
type DefaultTolerationSeconds struct {
	NotReady    int64
	Unreachable int64
}

var _ Mutator = DefaultTolerationSeconds{}

// Admit adds the missing tolerations to pods being created. It also runs on updates (Kubernetes
// runs it on creation only), where it adds back the tolerations it gave the pod when the update
// leaves them out: Skiff's clients replace whole objects (there is no patch), and a pod's
// tolerations may not be removed.
func (p DefaultTolerationSeconds) Admit(_ context.Context, a *Attributes) error {
	if (a.Operation != Create && a.Operation != Update) || a.SubResource != "" || a.Kind == nil || a.Kind.Group != "" || a.Kind.Kind != "Pod" {
		return nil
	}
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	if pod.Spec == nil {
		pod.Spec = &corev1.PodSpec{}
	}
	var notReady, unreachable bool
	for _, t := range pod.Spec.Tolerations {
		noExecute := t.GetEffect() == taints.NoExecute || t.GetEffect() == ""
		notReady = notReady || (noExecute && (t.GetKey() == taints.NotReady || t.GetKey() == ""))
		unreachable = unreachable || (noExecute && (t.GetKey() == taints.Unreachable || t.GetKey() == ""))
	}
	if !notReady {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, &corev1.Toleration{Key: taints.NotReady, Operator: "Exists",
			Effect: taints.NoExecute, TolerationSeconds: proto.Int64(p.NotReady)})
	}
	if !unreachable {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, &corev1.Toleration{Key: taints.Unreachable, Operator: "Exists",
			Effect: taints.NoExecute, TolerationSeconds: proto.Int64(p.Unreachable)})
	}
	return nil
}
