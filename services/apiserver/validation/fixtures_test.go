package validation

import (
	"testing"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Realistic, valid, defaulted objects that the table tests break one field at a time.

func intStr(i int32) *metav1.IntOrString {
	return &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: i}}
}

func strVal(s string) *metav1.IntOrString {
	return &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: s}}
}

func webPodSpec() *corev1.PodSpec {
	return &corev1.PodSpec{
		InitContainers: []*corev1.Container{{
			Name: "migrate", Image: "registry.example.com/web/migrate:v1.4.2",
			Command: []string{"/bin/migrate", "--up"},
		}},
		Containers: []*corev1.Container{{
			Name:  "web",
			Image: "nginx:1.25.3",
			Ports: []*corev1.ContainerPort{{Name: "http", ContainerPort: 80}, {Name: "metrics", ContainerPort: 9113}},
			Env: []*corev1.EnvVar{
				{Name: "LOG_LEVEL", Value: "info"},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.KeySelector{Name: "db", Key: "password"}}},
			},
			Resources: &corev1.ResourceRequirements{
				Requests: map[string]string{"cpu": "100m", "memory": "64Mi"},
				Limits:   map[string]string{"cpu": "500m", "memory": "128Mi"},
			},
			LivenessProbe:  &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/healthz", Port: strVal("http")}, InitialDelaySeconds: 5},
			ReadinessProbe: &corev1.Probe{TcpSocket: &corev1.TCPSocketAction{Port: intStr(80)}},
			VolumeMounts: []*corev1.VolumeMount{
				{Name: "cache", MountPath: "/var/cache/nginx"},
				{Name: "config", MountPath: "/etc/nginx/conf.d", ReadOnly: true},
			},
		}, {
			Name:          "log-shipper",
			Image:         "fluent/fluent-bit@sha256:9b9f1c6a1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a",
			LivenessProbe: &corev1.Probe{Exec: &corev1.ExecAction{Command: []string{"/bin/true"}}},
		}},
		Volumes: []*corev1.Volume{
			{Name: "cache", EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: "1Gi"}},
			{Name: "config", ConfigMap: &corev1.ConfigMapVolumeSource{Name: "nginx-conf"}},
		},
		NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
		Tolerations: []*corev1.Toleration{
			{Key: "node.kubernetes.io/not-ready", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: proto.Int64(300)},
			{Key: "dedicated", Operator: "Equal", Value: "web", Effect: "NoSchedule"},
		},
		Affinity: &corev1.Affinity{
			NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []*corev1.NodeSelectorTerm{{
					MatchExpressions: []*corev1.NodeSelectorRequirement{
						{Key: "topology.kubernetes.io/zone", Operator: "In", Values: []string{"eu-west-1a", "eu-west-1b"}},
						{Key: "example.com/cores", Operator: "Gt", Values: []string{"3"}},
					},
				}}},
				PreferredDuringSchedulingIgnoredDuringExecution: []*corev1.PreferredSchedulingTerm{{
					Weight: 50, Preference: &corev1.NodeSelectorTerm{MatchExpressions: []*corev1.NodeSelectorRequirement{
						{Key: "node.kubernetes.io/instance-type", Operator: "Exists"}}},
				}},
			},
			PodAntiAffinity: &corev1.PodAntiAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []*corev1.WeightedPodAffinityTerm{{
					Weight: 100,
					PodAffinityTerm: &corev1.PodAffinityTerm{
						LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
						TopologyKey:   "kubernetes.io/hostname",
					},
				}},
			},
		},
		ServiceAccountName: "web",
	}
}

func validPod() *corev1.Pod {
	pod := &corev1.Pod{
		ApiVersion: "v1", Kind: "Pod",
		Metadata: &metav1.ObjectMeta{
			Name: "web-7d4b9c8f6-x2kqp", Namespace: "default",
			Labels:      map[string]string{"app": "web", "pod-template-hash": "7d4b9c8f6"},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"},
			OwnerReferences: []*metav1.OwnerReference{{
				ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c8f6",
				Uid: "0b6e6d4c-3f5a-4f7e-9a53-1c7e2b8d9f10", Controller: proto.Bool(true), BlockOwnerDeletion: proto.Bool(true),
			}},
			Finalizers: []string{"example.com/drain"},
		},
		Spec: webPodSpec(),
	}
	Default(pod)
	return pod
}

func validService() *corev1.Service {
	svc := &corev1.Service{
		ApiVersion: "v1", Kind: "Service",
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &corev1.ServiceSpec{
			Selector:  map[string]string{"app": "web"},
			ClusterIp: "10.96.12.34",
			Ports: []*corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: strVal("http")},
				{Name: "metrics", Port: 9113},
			},
		},
	}
	Default(svc)
	return svc
}

func validNode() *corev1.Node {
	node := &corev1.Node{
		ApiVersion: "v1", Kind: "Node",
		Metadata: &metav1.ObjectMeta{Name: "worker-1.eu-west-1.compute.internal",
			Labels: map[string]string{"kubernetes.io/hostname": "worker-1", "kubernetes.io/os": "linux"}},
		Spec: &corev1.NodeSpec{
			PodCidr: "10.244.1.0/24", PodCidrs: []string{"10.244.1.0/24"}, ProviderId: "skiff://worker-1",
			Taints: []*corev1.Taint{{Key: "dedicated", Value: "web", Effect: "NoSchedule"}},
		},
		Status: &corev1.NodeStatus{
			Capacity:    map[string]string{"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"},
			Allocatable: map[string]string{"cpu": "3800m", "memory": "15Gi", "pods": "110", "ephemeral-storage": "95Gi"},
			Addresses:   []*corev1.NodeAddress{{Type: "InternalIP", Address: "192.168.1.11"}, {Type: "Hostname", Address: "worker-1"}},
			Conditions:  []*corev1.NodeCondition{{Type: "Ready", Status: "True"}},
		},
	}
	Default(node)
	return node
}

func validNamespace() *corev1.Namespace {
	ns := &corev1.Namespace{ApiVersion: "v1", Kind: "Namespace",
		Metadata: &metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{"kubernetes.io/metadata.name": "team-a"}},
		Spec:     &corev1.NamespaceSpec{Finalizers: []string{"kubernetes"}}}
	Default(ns)
	return ns
}

func validEndpoints() *corev1.Endpoints {
	ep := &corev1.Endpoints{
		ApiVersion: "v1", Kind: "Endpoints",
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Subsets: []*corev1.EndpointSubset{{
			Addresses: []*corev1.EndpointAddress{
				{Ip: "10.244.1.7", NodeName: "worker-1", TargetRef: &metav1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: "default"}},
				{Ip: "fd00::7"},
			},
			NotReadyAddresses: []*corev1.EndpointAddress{{Ip: "10.244.2.9"}},
			Ports:             []*corev1.EndpointPort{{Name: "http", Port: 80}, {Name: "metrics", Port: 9113}},
		}},
	}
	Default(ep)
	return ep
}

func validEvent() *corev1.Event {
	return &corev1.Event{
		ApiVersion: "v1", Kind: "Event",
		Metadata: &metav1.ObjectMeta{Name: "web-7d4b9c8f6-x2kqp.17c9d8e0a1b2c3d4", Namespace: "default"},
		InvolvedObject: &metav1.ObjectReference{ApiVersion: "v1", Kind: "Pod", Name: "web-7d4b9c8f6-x2kqp",
			Namespace: "default", FieldPath: "spec.containers{web}"},
		Reason: "Pulled", Message: "Successfully pulled image \"nginx:1.25.3\"", Type: "Normal", Count: 1,
		Source: &corev1.EventSource{Component: "kubelet", Host: "worker-1"},
	}
}

func webTemplate() *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "frontend"}},
		Spec:     webPodSpec(),
	}
}

func validReplicaSet() *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ApiVersion: "apps/v1", Kind: "ReplicaSet",
		Metadata: &metav1.ObjectMeta{Name: "web-7d4b9c8f6", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &appsv1.ReplicaSetSpec{
			Replicas: proto.Int32(3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: webTemplate(),
		},
	}
	Default(rs)
	return rs
}

func validDeployment() *appsv1.Deployment {
	d := &appsv1.Deployment{
		ApiVersion: "apps/v1", Kind: "Deployment",
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &appsv1.DeploymentSpec{
			Replicas: proto.Int32(3),
			Selector: &metav1.LabelSelector{
				MatchLabels:      map[string]string{"app": "web"},
				MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "tier", Operator: "In", Values: []string{"frontend", "edge"}}},
			},
			Template:        webTemplate(),
			MinReadySeconds: 10,
		},
	}
	Default(d)
	return d
}

// errCase is one table entry: break a valid object, expect the first error at field with typ.
type errCase[T scheme.Object] struct {
	name   string
	mutate func(T)
	field  string
	typ    ErrorType
}

// runErrCases applies each case to a fresh valid object and checks the first error.
func runErrCases[T scheme.Object](t *testing.T, valid func() T, check func(T) ErrorList, cases []errCase[T]) {
	t.Helper()
	if errs := check(valid()); len(errs) != 0 {
		t.Fatalf("the valid object is refused: %v", errs.ToAggregate())
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj := valid()
			c.mutate(obj)
			errs := check(obj)
			if len(errs) == 0 {
				t.Fatalf("accepted; want %s at %s", c.typ, c.field)
			}
			if errs[0].Field != c.field || errs[0].Type != c.typ {
				t.Fatalf("first error %q (%s); want %s at %s\nall: %v", errs[0].Field, errs[0].Type, c.typ, c.field, errs.ToAggregate())
			}
			if msg := errs[0].Error(); msg == "" {
				t.Fatal("empty message")
			}
		})
	}
}

func validate[T scheme.Object](obj T) ErrorList { return Validate(obj) }
