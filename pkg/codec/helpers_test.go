package codec

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// filler sets every field of a message, recursively, to distinct non-zero values (optional
// scalars alternate with zero, to exercise explicit presence), so round trips cover every
// field the protos declare.
type filler struct{ n int }

func (f *filler) fill(m protoreflect.Message) {
	md := m.Descriptor()
	if md.FullName() == intOrStringName {
		f.n++
		if f.n%2 == 0 {
			m.Set(md.Fields().ByName("int_val"), protoreflect.ValueOfInt32(int32(f.n)))
		} else {
			m.Set(md.Fields().ByName("str_val"), protoreflect.ValueOfString(fmt.Sprintf("port-%d", f.n)))
		}
		return
	}
	if md.FullName() == fieldsV1Name {
		f.n++
		m.Set(md.Fields().ByName("raw"), protoreflect.ValueOfBytes([]byte(fmt.Sprintf(`{"f:n%d":{}}`, f.n))))
		return
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < 2; j++ {
				if fd.Message() != nil {
					v := l.NewElement()
					f.fill(v.Message())
					l.Append(v)
				} else {
					l.Append(f.scalar(fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j := 0; j < 2; j++ {
				k := f.scalar(fd.MapKey()).MapKey()
				if fd.MapValue().Message() != nil {
					f.fill(mp.Mutable(k).Message())
				} else {
					mp.Set(k, f.scalar(fd.MapValue()))
				}
			}
		case fd.Message() != nil:
			f.fill(m.Mutable(fd).Message())
		case fd.HasPresence() && f.n%3 == 0:
			f.n++
			m.Set(fd, fd.Default()) // optional, set to zero
		default:
			m.Set(fd, f.scalar(fd))
		}
	}
}

func (f *filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	f.n++
	switch fd.Kind() {
	case protoreflect.StringKind:
		if isTimestampField(fd) {
			return protoreflect.ValueOfString(fmt.Sprintf("2024-05-01T12:00:%02d.%06dZ", f.n%60, f.n))
		}
		// Characters encoding/json escapes, and non-ASCII.
		return protoreflect.ValueOfString(fmt.Sprintf("v%d <&> \"q\" \\ \n\t é ☃ \u2028", f.n))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(-f.n * 1000))
	case protoreflect.Int64Kind:
		// Above 2^53, where float64 would lose precision.
		return protoreflect.ValueOfInt64(int64(1)<<60 + int64(f.n))
	}
	panic(fmt.Sprintf("filler: unhandled kind %v of %s", fd.Kind(), fd.FullName()))
}

func filled[M proto.Message](m M) M {
	(&filler{}).fill(m.ProtoReflect())
	return m
}

// examplePod is a realistic, fully specified pod.
func examplePod() *corev1.Pod {
	return &corev1.Pod{
		ApiVersion: "v1",
		Kind:       "Pod",
		Metadata: &metav1.ObjectMeta{
			Name:                       "web-7d4b9c-x2k4p",
			Namespace:                  "default",
			Uid:                        "5f0c3c1e-8f7a-4b8e-9a52-0d7c3e2b1a90",
			ResourceVersion:            "12345",
			Generation:                 1,
			CreationTimestamp:          "2024-05-01T12:00:00Z",
			Labels:                     map[string]string{"app": "web", "pod-template-hash": "7d4b9c"},
			Annotations:                map[string]string{"note": "<b>&</b>"},
			DeletionGracePeriodSeconds: proto.Int64(0),
			OwnerReferences: []*metav1.OwnerReference{{
				ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c", Uid: "u1",
				Controller: proto.Bool(true), BlockOwnerDeletion: proto.Bool(true),
			}},
			Finalizers: []string{"skiff.io/test"},
		},
		Spec: &corev1.PodSpec{
			Containers: []*corev1.Container{{
				Name:            "nginx",
				Image:           "nginx:1.25",
				Command:         []string{"nginx", "-g", "daemon off;"},
				Ports:           []*corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: "TCP"}},
				Env:             []*corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
				Resources:       &corev1.ResourceRequirements{Limits: map[string]string{"cpu": "500m", "memory": "128Mi"}, Requests: map[string]string{"cpu": "100m"}},
				ReadinessProbe:  &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/healthz", Port: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "http"}}}, PeriodSeconds: 10},
				LivenessProbe:   &corev1.Probe{TcpSocket: &corev1.TCPSocketAction{Port: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 80}}}},
				ImagePullPolicy: "IfNotPresent",
				VolumeMounts:    []*corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			RestartPolicy:                 "Always",
			TerminationGracePeriodSeconds: proto.Int64(30),
			NodeName:                      "node-1",
			NodeSelector:                  map[string]string{"disk": "ssd"},
			Tolerations:                   []*corev1.Toleration{{Key: "k", Operator: "Exists", Effect: "NoSchedule"}},
			Volumes:                       []*corev1.Volume{{Name: "data", EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		},
		Status: &corev1.PodStatus{
			Phase:  "Running",
			HostIp: "10.0.0.1",
			PodIp:  "10.244.1.7",
			PodIps: []*corev1.PodIP{{Ip: "10.244.1.7"}},
			Conditions: []*corev1.PodCondition{
				{Type: "Ready", Status: "True", LastTransitionTime: "2024-05-01T12:00:05Z"},
			},
			ContainerStatuses: []*corev1.ContainerStatus{{
				Name: "nginx", Ready: true, RestartCount: 0, Image: "nginx:1.25", ImageId: "sha256:abc",
				ContainerId: "containerd://123", Started: proto.Bool(true),
				State: &corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: "2024-05-01T12:00:02Z"}},
			}},
			StartTime: "2024-05-01T12:00:00Z",
		},
	}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := Marshal(m)
	if err != nil {
		t.Fatalf("Marshal(%T): %v", m, err)
	}
	return b
}

// deploymentWithReplicas is a small Deployment with spec.replicas set to n.
func deploymentWithReplicas(n int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ApiVersion: "apps/v1", Kind: "Deployment",
		Metadata: &metav1.ObjectMeta{Name: "d"},
		Spec:     &appsv1.DeploymentSpec{Replicas: proto.Int32(n)},
	}
}
