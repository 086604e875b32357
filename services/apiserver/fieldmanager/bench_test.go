package fieldmanager

import (
	"encoding/json"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/codec"
)

func benchPod() *corev1.Pod {
	return &corev1.Pod{
		ApiVersion: "v1", Kind: "Pod",
		Metadata: &metav1.ObjectMeta{Name: "p", Namespace: "default",
			Labels:      map[string]string{"app": "bench", "tier": "web"},
			Annotations: map[string]string{"example.com/owner": "benchmarks", "example.com/note": "a realistic pod"}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{
			Name: "web", Image: "registry.local/web:1.2.3", Command: []string{"/web"}, Args: []string{"--port=8080", "--verbose"},
			Ports: []*corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Env:   []*corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "local"}},
			Resources: &corev1.ResourceRequirements{
				Requests: map[string]string{"cpu": "100m", "memory": "64Mi"},
				Limits:   map[string]string{"cpu": "500m", "memory": "128Mi"}},
		}}, NodeSelector: map[string]string{"disk": "ssd"}},
	}
}

// BenchmarkCreateFields compares a create's managed fields from the message with the JSON walk.
func BenchmarkCreateFields(b *testing.B) {
	pod := benchPod()
	req := Request{Manager: "m", APIVersion: "v1", Time: "t", Type: pod.ProtoReflect().Descriptor()}
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			set, _ := MessageSet(pod.ProtoReflect())
			out, _ := UpdateSet(nil, nil, set, nil, req)
			_ = out[0].Fields.MarshalFieldsV1()
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			enc, _ := codec.Marshal(pod)
			var m map[string]any
			_ = json.Unmarshal(enc, &m)
			out, _ := update(nil, m, Scope(ObjectSet(m, req.Type), ""), nil, req)
			_, _ = json.Marshal(out[0].Fields)
		}
	})
}

// BenchmarkObjectJSON compares an object's JSON value from the message with the round trip.
func BenchmarkObjectJSON(b *testing.B) {
	pod := benchPod()
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = MessageJSON(pod.ProtoReflect())
		}
	})
	b.Run("roundtrip", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			enc, _ := codec.Marshal(pod)
			var m map[string]any
			_ = json.Unmarshal(enc, &m)
		}
	})
}
