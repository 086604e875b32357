package validation

import (
	"testing"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestDefaultPullPolicy(t *testing.T) {
	cases := map[string]string{
		"nginx":                                 "Always",
		"nginx:latest":                          "Always",
		"nginx:1.25.3":                          "IfNotPresent",
		"docker.io/library/nginx":               "Always",
		"localhost:5000/team/app":               "Always", // a registry port is not a tag
		"localhost:5000/team/app:v2":            "IfNotPresent",
		"ghcr.io/org/app@sha256:0123abc":        "IfNotPresent", // pinned by digest
		"ghcr.io/org/app:latest@sha256:0123abc": "Always",
	}
	for image, want := range cases {
		if got := defaultPullPolicy(image); got != want {
			t.Errorf("%s: got %s, want %s", image, got, want)
		}
	}
}

func TestDefaultPod(t *testing.T) {
	pod := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &corev1.PodSpec{
			InitContainers: []*corev1.Container{{Name: "init", Image: "busybox:1.36"}},
			Containers: []*corev1.Container{{
				Name: "web", Image: "nginx",
				Ports:          []*corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 53, Protocol: "UDP"}},
				Resources:      &corev1.ResourceRequirements{Limits: map[string]string{"cpu": "1", "memory": "256Mi"}, Requests: map[string]string{"cpu": "250m"}},
				LivenessProbe:  &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Port: intStr(80)}},
				ReadinessProbe: &corev1.Probe{TcpSocket: &corev1.TCPSocketAction{Port: intStr(80)}, PeriodSeconds: 5, FailureThreshold: 6},
			}},
			Volumes: []*corev1.Volume{{Name: "scratch"}},
		},
	}
	Default(pod)
	s := pod.Spec
	if s.RestartPolicy != "Always" || s.DnsPolicy != "ClusterFirst" || s.SchedulerName != "default-scheduler" ||
		s.GetTerminationGracePeriodSeconds() != 30 || s.TerminationGracePeriodSeconds == nil {
		t.Errorf("pod spec defaults: %v", s)
	}
	c := s.Containers[0]
	if c.ImagePullPolicy != "Always" || s.InitContainers[0].ImagePullPolicy != "IfNotPresent" {
		t.Errorf("pull policies: %s, %s", c.ImagePullPolicy, s.InitContainers[0].ImagePullPolicy)
	}
	if c.Ports[0].Protocol != "TCP" || c.Ports[1].Protocol != "UDP" || c.Ports[0].HostPort != 0 {
		t.Errorf("ports: %v", c.Ports)
	}
	if c.Resources.Requests["cpu"] != "250m" || c.Resources.Requests["memory"] != "256Mi" {
		t.Errorf("requests default to limits only where unset: %v", c.Resources.Requests)
	}
	lp := c.LivenessProbe
	if lp.TimeoutSeconds != 1 || lp.PeriodSeconds != 10 || lp.SuccessThreshold != 1 || lp.FailureThreshold != 3 ||
		lp.HttpGet.Path != "/" || lp.HttpGet.Scheme != "HTTP" {
		t.Errorf("liveness probe defaults: %v", lp)
	}
	if rp := c.ReadinessProbe; rp.PeriodSeconds != 5 || rp.FailureThreshold != 6 || rp.TimeoutSeconds != 1 {
		t.Errorf("readiness probe kept its values: %v", rp)
	}
	if s.Volumes[0].EmptyDir == nil {
		t.Errorf("a volume without source becomes an emptyDir")
	}
	if pod.Status != nil {
		t.Errorf("status is the registry's business: %v", pod.Status)
	}
	if errs := Validate(pod); len(errs) > 0 {
		t.Errorf("defaulted pod refused: %v", errs.ToAggregate())
	}

	// Defaulting twice changes nothing, and explicit values stay.
	again := proto.Clone(pod).(*corev1.Pod)
	Default(again)
	if !proto.Equal(again, pod) {
		t.Errorf("Default is not idempotent")
	}
	explicit := &corev1.Pod{Spec: &corev1.PodSpec{RestartPolicy: "Never", DnsPolicy: "Default", SchedulerName: "batch",
		TerminationGracePeriodSeconds: proto.Int64(0), Containers: []*corev1.Container{{Name: "c", Image: "app:latest", ImagePullPolicy: "Never"}}}}
	Default(explicit)
	if s := explicit.Spec; s.RestartPolicy != "Never" || s.DnsPolicy != "Default" || s.SchedulerName != "batch" ||
		s.GetTerminationGracePeriodSeconds() != 0 || s.Containers[0].ImagePullPolicy != "Never" {
		t.Errorf("explicit values overwritten: %v", s)
	}

	hostNet := &corev1.Pod{Spec: &corev1.PodSpec{HostNetwork: true,
		Containers: []*corev1.Container{{Name: "c", Image: "app:v1", Ports: []*corev1.ContainerPort{{ContainerPort: 9100}}}}}}
	Default(hostNet)
	if hp := hostNet.Spec.Containers[0].Ports[0].HostPort; hp != 9100 {
		t.Errorf("hostNetwork hostPort: got %d", hp)
	}

	empty := &corev1.Pod{}
	Default(empty)
	if empty.Spec == nil || empty.Spec.RestartPolicy != "Always" {
		t.Errorf("a pod without spec gets a defaulted spec: %v", empty.Spec)
	}
}

func TestDefaultService(t *testing.T) {
	svc := &corev1.Service{
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &corev1.ServiceSpec{Ports: []*corev1.ServicePort{
			{Name: "http", Port: 80},
			{Name: "dns", Port: 53, Protocol: "UDP", TargetPort: strVal("dns")},
			{Name: "zero", Port: 8080, TargetPort: intStr(0)},
		}},
	}
	Default(svc)
	s := svc.Spec
	if s.Type != "ClusterIP" || s.SessionAffinity != "None" || s.InternalTrafficPolicy != "Cluster" || s.ExternalTrafficPolicy != "" {
		t.Errorf("service defaults: %v", s)
	}
	if s.Ports[0].Protocol != "TCP" || s.Ports[1].Protocol != "UDP" {
		t.Errorf("protocols: %v", s.Ports)
	}
	if s.Ports[0].TargetPort.GetIntVal() != 80 || s.Ports[1].TargetPort.GetStrVal() != "dns" || s.Ports[2].TargetPort.GetIntVal() != 8080 {
		t.Errorf("targetPorts: %v", s.Ports)
	}

	lb := &corev1.Service{Spec: &corev1.ServiceSpec{Type: "LoadBalancer"}}
	Default(lb)
	if lb.Spec.ExternalTrafficPolicy != "Cluster" {
		t.Errorf("load balancer externalTrafficPolicy: %q", lb.Spec.ExternalTrafficPolicy)
	}
}

func TestDefaultDeployment(t *testing.T) {
	d := &appsv1.Deployment{
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: &corev1.PodTemplateSpec{
				Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:     &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "nginx:1.25.3", Ports: []*corev1.ContainerPort{{ContainerPort: 80}}}}},
			},
		},
	}
	Default(d)
	s := d.Spec
	if s.Replicas == nil || *s.Replicas != 1 {
		t.Errorf("replicas: %v", s.Replicas)
	}
	if s.Strategy.GetType() != "RollingUpdate" || s.Strategy.GetRollingUpdate().GetMaxUnavailable().GetStrVal() != "25%" ||
		s.Strategy.GetRollingUpdate().GetMaxSurge().GetStrVal() != "25%" {
		t.Errorf("strategy: %v", s.Strategy)
	}
	if s.RevisionHistoryLimit == nil || *s.RevisionHistoryLimit != 10 || s.ProgressDeadlineSeconds == nil || *s.ProgressDeadlineSeconds != 600 {
		t.Errorf("limits: %v %v", s.RevisionHistoryLimit, s.ProgressDeadlineSeconds)
	}
	ps := s.Template.Spec
	if ps.RestartPolicy != "Always" || ps.DnsPolicy != "ClusterFirst" || ps.Containers[0].ImagePullPolicy != "IfNotPresent" ||
		ps.Containers[0].Ports[0].Protocol != "TCP" {
		t.Errorf("template defaults: %v", ps)
	}
	if errs := Validate(d); len(errs) > 0 {
		t.Errorf("defaulted deployment refused: %v", errs.ToAggregate())
	}

	// Only the unset half of rollingUpdate is filled, and Recreate gets none.
	partial := &appsv1.Deployment{Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(0), RevisionHistoryLimit: proto.Int32(0),
		Strategy: &appsv1.DeploymentStrategy{Type: "RollingUpdate", RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: intStr(2)}}}}
	Default(partial)
	ru := partial.Spec.Strategy.RollingUpdate
	if ru.GetMaxSurge().GetIntVal() != 2 || ru.GetMaxUnavailable().GetStrVal() != "25%" ||
		*partial.Spec.Replicas != 0 || *partial.Spec.RevisionHistoryLimit != 0 {
		t.Errorf("partial: %v", partial.Spec)
	}
	recreate := &appsv1.Deployment{Spec: &appsv1.DeploymentSpec{Strategy: &appsv1.DeploymentStrategy{Type: "Recreate"}}}
	Default(recreate)
	if recreate.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("Recreate got a rollingUpdate: %v", recreate.Spec.Strategy)
	}
}

func TestDefaultReplicaSetNamespaceNodeEndpoints(t *testing.T) {
	rs := &appsv1.ReplicaSet{Spec: &appsv1.ReplicaSetSpec{Template: &corev1.PodTemplateSpec{
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "app:v1"}}}}}}
	Default(rs)
	if rs.Spec.GetReplicas() != 1 || rs.Spec.Replicas == nil || rs.Spec.Template.Spec.RestartPolicy != "Always" ||
		rs.Spec.Template.Spec.GetTerminationGracePeriodSeconds() != 30 {
		t.Errorf("replicaset: %v", rs.Spec)
	}

	ns := &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "team-a"}}
	Default(ns)
	if ns.Status.GetPhase() != "Active" {
		t.Errorf("namespace phase: %q", ns.Status.GetPhase())
	}
	ns.Status.Phase = "Terminating"
	Default(ns)
	if ns.Status.Phase != "Terminating" {
		t.Errorf("namespace phase overwritten: %q", ns.Status.Phase)
	}

	node := &corev1.Node{Status: &corev1.NodeStatus{Capacity: map[string]string{"cpu": "2", "memory": "4Gi", "pods": "110"}}}
	Default(node)
	if node.Status.Allocatable["cpu"] != "2" || node.Status.Allocatable["pods"] != "110" {
		t.Errorf("node allocatable: %v", node.Status.Allocatable)
	}

	ep := &corev1.Endpoints{Subsets: []*corev1.EndpointSubset{{Ports: []*corev1.EndpointPort{{Port: 80}}}}}
	Default(ep)
	if ep.Subsets[0].Ports[0].Protocol != "TCP" {
		t.Errorf("endpoint port protocol: %q", ep.Subsets[0].Ports[0].Protocol)
	}

	// Kinds without defaults and nil pieces must not panic.
	Default(&corev1.Event{})
	Default(&corev1.Node{})
	Default(&appsv1.ReplicaSet{})
}
