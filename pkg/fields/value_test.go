package fields_test

import (
	"errors"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/fields"
)

func TestValue(t *testing.T) {
	pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "web-0"},
		Spec:   &corev1.PodSpec{NodeName: "n1", HostNetwork: true},
		Status: &corev1.PodStatus{PodIp: "10.0.0.7"}}
	for path, want := range map[string]string{
		"metadata.name": "web-0", "spec.nodeName": "n1", "spec.hostNetwork": "true",
		"status.podIP": "10.0.0.7", "metadata.namespace": "", "spec.restartPolicy": "",
	} {
		got, err := fields.Value(pod.ProtoReflect(), path)
		if err != nil || got != want {
			t.Errorf("Value(%s) = %q, %v; want %q", path, got, err, want)
		}
	}
	// An unset message reads as empty rather than failing.
	if got, err := fields.Value((&corev1.Pod{}).ProtoReflect(), "status.phase"); err != nil || got != "" {
		t.Errorf("Value of an unset status = %q, %v", got, err)
	}
	for _, bad := range []string{"", "spec", "spec.containers", "metadata.labels", "spec.nodeName.x", "spec.nope", "status.pod_ip"} {
		if _, err := fields.Value(pod.ProtoReflect(), bad); !errors.Is(err, fields.ErrPath) {
			t.Errorf("Value(%q) error = %v, want ErrPath", bad, err)
		}
	}
}
