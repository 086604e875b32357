package cli

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-5 * time.Second:               "<invalid>",
		-time.Second:                   "0s",
		5 * time.Second:                "5s",
		119 * time.Second:              "119s",
		3 * time.Minute:                "3m",
		3*time.Minute + 20*time.Second: "3m20s",
		45 * time.Minute:               "45m",
		5*time.Hour + 30*time.Minute:   "5h30m",
		30 * time.Hour:                 "30h",
		50 * time.Hour:                 "2d2h",
		48 * time.Hour:                 "2d",
		30 * 24 * time.Hour:            "30d",
		3 * 365 * 24 * time.Hour:       "3y",
		10 * 365 * 24 * time.Hour:      "10y",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestPrintTable(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	created := now.Add(-5 * time.Minute).Format(time.RFC3339)
	s := scheme.Default()
	k, _ := s.ForName("pods")
	pod := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "web-1", Namespace: "default", CreationTimestamp: created,
			OwnerReferences: []*metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-7d9f", Controller: proto.Bool(true)}}},
		Spec: &corev1.PodSpec{NodeName: "node-a", Containers: []*corev1.Container{{Name: "a"}, {Name: "b"}}},
		Status: &corev1.PodStatus{Phase: "Running", PodIp: "10.0.0.7", ContainerStatuses: []*corev1.ContainerStatus{
			{Name: "a", Ready: true, RestartCount: 2, State: &corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: "b", State: &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
		}},
	}
	var buf bytes.Buffer
	if err := printTable(&buf, k, []scheme.Object{pod}, tableOptions{wide: true, withNamespace: true, now: now}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAMESPACE   NAME    READY   STATUS             RESTARTS   AGE   IP         NODE     NOMINATED NODE   READINESS GATES   CONTROLLED BY\n" +
		"default     web-1   1/2     CrashLoopBackOff   2          5m    10.0.0.7   node-a   <none>           <none>            ReplicaSet/web-7d9f\n"
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}

	dk, _ := s.ForName("deploy")
	dep := &appsv1.Deployment{
		Metadata: &metav1.ObjectMeta{Name: "web", CreationTimestamp: created},
		Spec:     &appsv1.DeploymentSpec{Replicas: proto.Int32(3)},
		Status:   &appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2},
	}
	buf.Reset()
	if err := printTable(&buf, dk, []scheme.Object{dep}, tableOptions{namePrefix: "deployment.apps/", now: now}); err != nil {
		t.Fatal(err)
	}
	want = "" +
		"NAME                  READY   UP-TO-DATE   AVAILABLE   AGE\n" +
		"deployment.apps/web   2/3     3            2           5m\n"
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

func TestServiceColumns(t *testing.T) {
	svc := &corev1.Service{Spec: &corev1.ServiceSpec{Type: "NodePort", ClusterIp: "10.96.0.9", Ports: []*corev1.ServicePort{
		{Port: 80, NodePort: 30080}, {Port: 53, Protocol: "UDP"},
	}}}
	if got := servicePorts(svc.Spec.Ports); got != "80:30080/TCP,53/UDP" {
		t.Errorf("ports %q", got)
	}
	if got := serviceExternalIP(svc); got != "<none>" {
		t.Errorf("external IP %q", got)
	}
	if got := servicePorts(nil); got != "<none>" {
		t.Errorf("no ports %q", got)
	}
}

func TestNodeStatus(t *testing.T) {
	n := &corev1.Node{
		Spec:   &corev1.NodeSpec{Unschedulable: true},
		Status: &corev1.NodeStatus{Conditions: []*corev1.NodeCondition{{Type: "Ready", Status: "True"}}},
	}
	if got := nodeStatus(n); got != "Ready,SchedulingDisabled" {
		t.Errorf("nodeStatus = %q", got)
	}
	if got := nodeStatus(&corev1.Node{}); got != "Unknown" {
		t.Errorf("nodeStatus of a new node = %q", got)
	}
}
