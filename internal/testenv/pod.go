package testenv

import (
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// RealisticPod is a pod of about 1 KiB when stored, with the fields real manifests carry
// (labels, annotations, ports, env, resources, a probe): what benchmarks write.
func RealisticPod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ApiVersion: "v1", Kind: "Pod",
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: namespace,
			Labels:      map[string]string{"app": "bench", "tier": "web"},
			Annotations: map[string]string{"example.com/owner": "benchmarks", "example.com/note": "a realistic pod"}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{
			Name: "web", Image: "registry.local/web:1.2.3", Command: []string{"/web"}, Args: []string{"--port=8080", "--verbose"},
			Ports: []*corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Env:   []*corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "local"}},
			Resources: &corev1.ResourceRequirements{
				Requests: map[string]string{"cpu": "100m", "memory": "64Mi"},
				Limits:   map[string]string{"cpu": "500m", "memory": "128Mi"}},
			ReadinessProbe: &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/healthz",
				Port: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 8080}}}},
		}}, NodeSelector: map[string]string{"disk": "ssd"}},
	}
}
