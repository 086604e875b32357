package validation

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// Gaps found by issue 6's adversarial requests: each case was accepted before.
func TestValidationGapsOfIssue6(t *testing.T) {
	svcCases := []errCase[*corev1.Service]{
		// A service name is a DNS-1035 label: it must start with a letter.
		{"name starting with a digit", func(s *corev1.Service) { s.Metadata.Name = "1abc" }, "metadata.name", ErrorTypeInvalid},
		// Two ports with the same port and protocol: kube-proxy could serve only one.
		{"duplicate port and protocol", func(s *corev1.Service) { s.Spec.Ports[1].Port = 80 }, "spec.ports[1]", ErrorTypeDuplicate},
	}
	runErrCases(t, validService, validate[*corev1.Service], svcCases)
	udp := validService()
	udp.Spec.Ports[1].Port, udp.Spec.Ports[1].Protocol = 80, "UDP"
	if errs := Validate(udp); len(errs) > 0 {
		t.Errorf("the same port over TCP and UDP refused: %v", errs.ToAggregate())
	}

	podCases := []errCase[*corev1.Pod]{
		// Two containers cannot bind the same host port, protocol and address.
		{"duplicate hostPort across containers", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports[0].HostPort = 8080
			p.Spec.Containers[1].Ports = []*corev1.ContainerPort{{ContainerPort: 9000, HostPort: 8080, Protocol: "TCP"}}
		}, "spec.containers[1].ports[0].hostPort", ErrorTypeDuplicate},
	}
	runErrCases(t, validPod, validate[*corev1.Pod], podCases)
}

func TestNoNewFinalizersWhileDeleting(t *testing.T) {
	old := validPod()
	old.Metadata.DeletionTimestamp = "2024-01-01T00:00:00Z"
	next := proto.Clone(old).(*corev1.Pod)
	next.Metadata.Finalizers = nil
	if errs := ValidateUpdate(next, old); len(errs) > 0 {
		t.Errorf("removing a finalizer while deleting: %v", errs.ToAggregate())
	}
	next.Metadata.Finalizers = append(old.Metadata.Finalizers, "example.com/late")
	errs := ValidateUpdate(next, old)
	if len(errs) != 1 || errs[0].Field != "metadata.finalizers" || errs[0].Type != ErrorTypeForbidden ||
		!strings.Contains(errs[0].Error(), "no new finalizers can be added if the object is being deleted") {
		t.Errorf("adding a finalizer while deleting: got %v; want metadata.finalizers Forbidden", errs.ToAggregate())
	}
	// Before deletion, finalizers come and go freely.
	live := validPod()
	next = proto.Clone(live).(*corev1.Pod)
	next.Metadata.Finalizers = append(next.Metadata.Finalizers, "example.com/late")
	if errs := ValidateUpdate(next, live); len(errs) > 0 {
		t.Errorf("adding a finalizer to a live object: %v", errs.ToAggregate())
	}
}

func TestValidateBinding(t *testing.T) {
	valid := func() *corev1.Binding {
		return &corev1.Binding{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Target: &metav1.ObjectReference{Kind: "Node", Name: "worker-1.example.com"}}
	}
	if errs := ValidateBinding(valid()); len(errs) > 0 {
		t.Fatalf("valid binding refused: %v", errs.ToAggregate())
	}
	noKind := valid()
	noKind.Target.Kind = ""
	if errs := ValidateBinding(noKind); len(errs) > 0 {
		t.Errorf("binding without target kind refused (Kubernetes accepts it): %v", errs.ToAggregate())
	}
	for _, c := range []struct {
		name, kind, node, field string
		typ                     ErrorType
	}{
		{"bad node name", "Node", "Bad_Node!", "target.name", ErrorTypeInvalid},
		{"no node", "Node", "", "target.name", ErrorTypeRequired},
		{"not a node", "Pod", "worker-1", "target.kind", ErrorTypeNotSupported},
	} {
		b := valid()
		b.Target.Kind, b.Target.Name = c.kind, c.node
		errs := ValidateBinding(b)
		if len(errs) == 0 || errs[0].Field != c.field || errs[0].Type != c.typ {
			t.Errorf("%s: got %v; want %s at %s", c.name, errs.ToAggregate(), c.typ, c.field)
		}
	}
}
