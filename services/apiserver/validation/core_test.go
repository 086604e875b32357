package validation

import (
	"testing"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

func TestValidateService(t *testing.T) {
	cases := []errCase[*corev1.Service]{
		{"name not a label", func(s *corev1.Service) { s.Metadata.Name = "web.frontend" }, "metadata.name", ErrorTypeInvalid},
		{"namespace missing", func(s *corev1.Service) { s.Metadata.Namespace = "" }, "metadata.namespace", ErrorTypeRequired},
		{"type", func(s *corev1.Service) { s.Spec.Type = "Internal" }, "spec.type", ErrorTypeNotSupported},
		{"no ports", func(s *corev1.Service) { s.Spec.Ports = nil }, "spec.ports", ErrorTypeRequired},
		{"port 0", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }, "spec.ports[0].port", ErrorTypeInvalid},
		{"port too big", func(s *corev1.Service) { s.Spec.Ports[1].Port = 65536 }, "spec.ports[1].port", ErrorTypeInvalid},
		{"protocol", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "HTTP" }, "spec.ports[0].protocol", ErrorTypeNotSupported},
		{"unnamed port among several", func(s *corev1.Service) { s.Spec.Ports[1].Name = "" }, "spec.ports[1].name", ErrorTypeRequired},
		{"duplicate port name", func(s *corev1.Service) { s.Spec.Ports[1].Name = "http" }, "spec.ports[1].name", ErrorTypeDuplicate},
		{"port name not a label", func(s *corev1.Service) { s.Spec.Ports[0].Name = "HTTP" }, "spec.ports[0].name", ErrorTypeInvalid},
		{"targetPort out of range", func(s *corev1.Service) { s.Spec.Ports[1].TargetPort = intStr(99999) }, "spec.ports[1].targetPort", ErrorTypeInvalid},
		{"targetPort bad name", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = strVal("http_port") }, "spec.ports[0].targetPort", ErrorTypeInvalid},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }, "spec.ports[0].nodePort", ErrorTypeForbidden},
		{"nodePort out of range", func(s *corev1.Service) { s.Spec.Type = "NodePort"; s.Spec.Ports[0].NodePort = 70000 },
			"spec.ports[0].nodePort", ErrorTypeInvalid},
		{"duplicate nodePort", func(s *corev1.Service) {
			s.Spec.Type = "NodePort"
			s.Spec.ExternalTrafficPolicy = "Cluster"
			s.Spec.Ports[0].NodePort, s.Spec.Ports[1].NodePort = 30080, 30080
		}, "spec.ports[1].nodePort", ErrorTypeDuplicate},
		{"selector key", func(s *corev1.Service) { s.Spec.Selector["app/"] = "x" }, "spec.selector", ErrorTypeInvalid},
		{"selector value", func(s *corev1.Service) { s.Spec.Selector["app"] = "-web" }, "spec.selector", ErrorTypeInvalid},
		{"clusterIP", func(s *corev1.Service) { s.Spec.ClusterIp = "10.96.300.1" }, "spec.clusterIP", ErrorTypeInvalid},
		{"None on NodePort", func(s *corev1.Service) { s.Spec.Type = "NodePort"; s.Spec.ClusterIp = "None" }, "spec.clusterIP", ErrorTypeInvalid},
		{"externalName missing", func(s *corev1.Service) { s.Spec.Type = "ExternalName"; s.Spec.ClusterIp = "" }, "spec.externalName", ErrorTypeRequired},
		{"externalName with clusterIP", func(s *corev1.Service) { s.Spec.Type = "ExternalName"; s.Spec.ExternalName = "db.example.com" },
			"spec.clusterIP", ErrorTypeForbidden},
		{"externalName invalid", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ClusterIp, s.Spec.ExternalName = "ExternalName", "", "db_primary.example.com"
		}, "spec.externalName", ErrorTypeInvalid},
		{"sessionAffinity", func(s *corev1.Service) { s.Spec.SessionAffinity = "Cookie" }, "spec.sessionAffinity", ErrorTypeNotSupported},
		{"externalIPs", func(s *corev1.Service) { s.Spec.ExternalIps = []string{"203.0.113.7", "example.com"} }, "spec.externalIPs[1]", ErrorTypeInvalid},
		{"clusterIPs mismatch", func(s *corev1.Service) { s.Spec.ClusterIps = []string{"10.96.12.35"} }, "spec.clusterIPs[0]", ErrorTypeInvalid},
	}
	runErrCases(t, validService, validate[*corev1.Service], cases)
}

func TestValidateServiceValidVariants(t *testing.T) {
	variants := map[string]*corev1.Service{
		"headless without ports": {Metadata: &metav1.ObjectMeta{Name: "db", Namespace: "default"},
			Spec: &corev1.ServiceSpec{ClusterIp: "None", Selector: map[string]string{"app": "db"}}},
		"external name": {Metadata: &metav1.ObjectMeta{Name: "db", Namespace: "default"},
			Spec: &corev1.ServiceSpec{Type: "ExternalName", ExternalName: "db.prod.example.com."}},
		"node port": {Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: &corev1.ServiceSpec{Type: "NodePort", Ports: []*corev1.ServicePort{{Port: 80, NodePort: 30080}}}},
		"load balancer without clusterIP yet": {Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: &corev1.ServiceSpec{Type: "LoadBalancer", SessionAffinity: "ClientIP", Ports: []*corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intStr(8443)}}}},
		"ipv6 cluster IP": {Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: &corev1.ServiceSpec{ClusterIp: "fd00:10:96::1", ClusterIps: []string{"fd00:10:96::1"}, Ports: []*corev1.ServicePort{{Port: 53, Protocol: "UDP"}}}},
	}
	for name, svc := range variants {
		Default(svc)
		if errs := Validate(svc); len(errs) > 0 {
			t.Errorf("%s refused: %v", name, errs.ToAggregate())
		}
	}
}

func TestValidateServiceUpdate(t *testing.T) {
	old := validService()
	cases := []struct {
		name   string
		mutate func(*corev1.Service)
		field  string
	}{
		{"ports change", func(s *corev1.Service) { s.Spec.Ports[0].Port = 8080 }, ""},
		{"selector change", func(s *corev1.Service) { s.Spec.Selector["tier"] = "frontend" }, ""},
		{"to ExternalName", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ClusterIp, s.Spec.ExternalName = "ExternalName", "", "web.example.com"
		}, ""},
		{"clusterIP change", func(s *corev1.Service) { s.Spec.ClusterIp = "10.96.12.35" }, "spec.clusterIP"},
		{"clusterIP cleared", func(s *corev1.Service) { s.Spec.ClusterIp = "" }, "spec.clusterIP"},
		{"to headless", func(s *corev1.Service) { s.Spec.ClusterIp = "None" }, "spec.clusterIP"},
	}
	for _, c := range cases {
		svc := proto.Clone(old).(*corev1.Service)
		c.mutate(svc)
		errs := ValidateUpdate(svc, old)
		switch {
		case c.field == "" && len(errs) > 0:
			t.Errorf("%s refused: %v", c.name, errs.ToAggregate())
		case c.field != "" && (len(errs) == 0 || errs[0].Field != c.field || errs[0].Type != ErrorTypeInvalid):
			t.Errorf("%s: got %v; want invalid %s", c.name, errs.ToAggregate(), c.field)
		}
	}
	// A service created without an IP may get one.
	noIP := proto.Clone(old).(*corev1.Service)
	noIP.Spec.ClusterIp = ""
	if errs := ValidateUpdate(old, noIP); len(errs) > 0 {
		t.Errorf("allocating a clusterIP refused: %v", errs.ToAggregate())
	}
}

func TestValidateServiceStatus(t *testing.T) {
	old := validService()
	svc := proto.Clone(old).(*corev1.Service)
	svc.Status = &corev1.ServiceStatus{LoadBalancer: &corev1.LoadBalancerStatus{Ingress: []*corev1.LoadBalancerIngress{
		{Ip: "203.0.113.10"}, {Hostname: "web.elb.example.com"}}}}
	if errs := ValidateStatusUpdate(svc, old); len(errs) > 0 {
		t.Fatalf("refused: %v", errs.ToAggregate())
	}
	svc.Status.LoadBalancer.Ingress[0].Ip = "203.0.113"
	if errs := ValidateStatusUpdate(svc, old); len(errs) == 0 || errs[0].Field != "status.loadBalancer.ingress[0].ip" {
		t.Fatalf("got %v", errs.ToAggregate())
	}
}

func TestValidateEndpoints(t *testing.T) {
	cases := []errCase[*corev1.Endpoints]{
		{"name", func(e *corev1.Endpoints) { e.Metadata.Name = "Web" }, "metadata.name", ErrorTypeInvalid},
		{"subset without addresses", func(e *corev1.Endpoints) { e.Subsets[0].Addresses, e.Subsets[0].NotReadyAddresses = nil, nil },
			"subsets[0]", ErrorTypeRequired},
		{"ip missing", func(e *corev1.Endpoints) { e.Subsets[0].Addresses[1].Ip = "" }, "subsets[0].addresses[1].ip", ErrorTypeRequired},
		{"ip invalid", func(e *corev1.Endpoints) { e.Subsets[0].Addresses[0].Ip = "10.244.1.256" }, "subsets[0].addresses[0].ip", ErrorTypeInvalid},
		{"not-ready ip invalid", func(e *corev1.Endpoints) { e.Subsets[0].NotReadyAddresses[0].Ip = "pod-1" },
			"subsets[0].notReadyAddresses[0].ip", ErrorTypeInvalid},
		{"port 0", func(e *corev1.Endpoints) { e.Subsets[0].Ports[0].Port = 0 }, "subsets[0].ports[0].port", ErrorTypeInvalid},
		{"protocol", func(e *corev1.Endpoints) { e.Subsets[0].Ports[1].Protocol = "QUIC" }, "subsets[0].ports[1].protocol", ErrorTypeNotSupported},
		{"unnamed port among several", func(e *corev1.Endpoints) { e.Subsets[0].Ports[0].Name = "" }, "subsets[0].ports[0].name", ErrorTypeRequired},
		{"duplicate port name", func(e *corev1.Endpoints) { e.Subsets[0].Ports[1].Name = "http" }, "subsets[0].ports[1].name", ErrorTypeDuplicate},
	}
	runErrCases(t, validEndpoints, validate[*corev1.Endpoints], cases)

	// One unnamed port is fine, and so is an empty Endpoints object (no ready pods yet).
	ep := validEndpoints()
	ep.Subsets[0].Ports = []*corev1.EndpointPort{{Port: 8080}}
	Default(ep)
	if errs := Validate(ep); len(errs) > 0 {
		t.Errorf("single unnamed port refused: %v", errs.ToAggregate())
	}
	ep.Subsets = nil
	if errs := Validate(ep); len(errs) > 0 {
		t.Errorf("empty endpoints refused: %v", errs.ToAggregate())
	}
}

func TestValidateEvent(t *testing.T) {
	cases := []errCase[*corev1.Event]{
		{"involvedObject kind", func(e *corev1.Event) { e.InvolvedObject.Kind = "" }, "involvedObject.kind", ErrorTypeRequired},
		{"involvedObject name", func(e *corev1.Event) { e.InvolvedObject.Name = "" }, "involvedObject.name", ErrorTypeRequired},
		{"involvedObject absent", func(e *corev1.Event) { e.InvolvedObject = nil }, "involvedObject.kind", ErrorTypeRequired},
		{"namespace mismatch", func(e *corev1.Event) { e.InvolvedObject.Namespace = "kube-system" }, "involvedObject.namespace", ErrorTypeInvalid},
		{"type", func(e *corev1.Event) { e.Type = "Error" }, "type", ErrorTypeNotSupported},
		{"name", func(e *corev1.Event) { e.Metadata.Name = "" }, "metadata.name", ErrorTypeRequired},
	}
	runErrCases(t, validEvent, validate[*corev1.Event], cases)

	// An event about a node lives in "default" and names no namespace.
	ev := validEvent()
	ev.InvolvedObject = &metav1.ObjectReference{Kind: "Node", Name: "worker-1"}
	if errs := Validate(ev); len(errs) > 0 {
		t.Errorf("node event refused: %v", errs.ToAggregate())
	}
}

func TestValidateNode(t *testing.T) {
	cases := []errCase[*corev1.Node]{
		{"name", func(n *corev1.Node) { n.Metadata.Name = "Worker_1" }, "metadata.name", ErrorTypeInvalid},
		{"namespace on cluster-scoped kind", func(n *corev1.Node) { n.Metadata.Namespace = "default" }, "metadata.namespace", ErrorTypeForbidden},
		{"podCIDR", func(n *corev1.Node) { n.Spec.PodCidr = "10.244.1.0" }, "spec.podCIDR", ErrorTypeInvalid},
		{"taint key missing", func(n *corev1.Node) { n.Spec.Taints[0].Key = "" }, "spec.taints[0].key", ErrorTypeRequired},
		{"taint key invalid", func(n *corev1.Node) { n.Spec.Taints[0].Key = "dedicated=web" }, "spec.taints[0].key", ErrorTypeInvalid},
		{"taint value", func(n *corev1.Node) { n.Spec.Taints[0].Value = "web frontend" }, "spec.taints[0].value", ErrorTypeInvalid},
		{"taint effect missing", func(n *corev1.Node) { n.Spec.Taints[0].Effect = "" }, "spec.taints[0].effect", ErrorTypeRequired},
		{"taint effect", func(n *corev1.Node) { n.Spec.Taints[0].Effect = "NoRun" }, "spec.taints[0].effect", ErrorTypeNotSupported},
		{"duplicate taint", func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, &corev1.Taint{Key: "dedicated", Value: "api", Effect: "NoSchedule"})
		}, "spec.taints[1]", ErrorTypeDuplicate},
		{"capacity", func(n *corev1.Node) { n.Status.Capacity["memory"] = "16 GiB" }, "status.capacity[memory]", ErrorTypeInvalid},
		{"allocatable negative", func(n *corev1.Node) { n.Status.Allocatable["cpu"] = "-1" }, "status.allocatable[cpu]", ErrorTypeInvalid},
	}
	runErrCases(t, validNode, validate[*corev1.Node], cases)

	// The same taint key with another effect is a different taint.
	n := validNode()
	n.Spec.Taints = append(n.Spec.Taints, &corev1.Taint{Key: "dedicated", Value: "web", Effect: "NoExecute"})
	if errs := Validate(n); len(errs) > 0 {
		t.Errorf("refused: %v", errs.ToAggregate())
	}
}

func TestValidateNodeUpdateAndStatus(t *testing.T) {
	old := validNode()
	n := proto.Clone(old).(*corev1.Node)
	n.Spec.Unschedulable = true
	n.Spec.Taints = append(n.Spec.Taints, &corev1.Taint{Key: "node.kubernetes.io/unschedulable", Effect: "NoSchedule"})
	n.Metadata.Labels["node-role.kubernetes.io/worker"] = ""
	if errs := ValidateUpdate(n, old); len(errs) > 0 {
		t.Fatalf("cordon refused: %v", errs.ToAggregate())
	}
	n = proto.Clone(old).(*corev1.Node)
	n.Spec.PodCidr, n.Spec.PodCidrs = "10.244.2.0/24", []string{"10.244.2.0/24"}
	if errs := ValidateUpdate(n, old); len(errs) == 0 || errs[0].Field != "spec.podCIDR" || errs[0].Type != ErrorTypeForbidden {
		t.Fatalf("podCIDR change: got %v", errs.ToAggregate())
	}
	noCIDR := proto.Clone(old).(*corev1.Node)
	noCIDR.Spec.PodCidr, noCIDR.Spec.PodCidrs = "", nil
	if errs := ValidateUpdate(old, noCIDR); len(errs) > 0 {
		t.Fatalf("assigning a podCIDR refused: %v", errs.ToAggregate())
	}

	n = proto.Clone(old).(*corev1.Node)
	n.Status.Capacity["pods"] = "many"
	if errs := ValidateStatusUpdate(n, old); len(errs) == 0 || errs[0].Field != "status.capacity[pods]" || errs[0].Type != ErrorTypeInvalid {
		t.Fatalf("status capacity: got %v", errs.ToAggregate())
	}
}

func TestValidateNamespace(t *testing.T) {
	cases := []errCase[*corev1.Namespace]{
		{"name missing", func(n *corev1.Namespace) { n.Metadata.Name = "" }, "metadata.name", ErrorTypeRequired},
		{"name with dot", func(n *corev1.Namespace) { n.Metadata.Name = "team.a" }, "metadata.name", ErrorTypeInvalid},
		{"name upper case", func(n *corev1.Namespace) { n.Metadata.Name = "TeamA" }, "metadata.name", ErrorTypeInvalid},
		{"namespace set", func(n *corev1.Namespace) { n.Metadata.Namespace = "default" }, "metadata.namespace", ErrorTypeForbidden},
		{"finalizer", func(n *corev1.Namespace) { n.Spec.Finalizers = []string{"cleanup"} }, "spec.finalizers", ErrorTypeInvalid},
		{"phase", func(n *corev1.Namespace) { n.Status.Phase = "Deleting" }, "status.phase", ErrorTypeNotSupported},
	}
	runErrCases(t, validNamespace, validate[*corev1.Namespace], cases)

	// The phase says what the deletionTimestamp says, as in Kubernetes.
	old := validNamespace()
	ns := proto.Clone(old).(*corev1.Namespace)
	ns.Status.Phase = "Terminating"
	if errs := ValidateStatusUpdate(ns, old); len(errs) != 1 || errs[0].Field != "status.phase" {
		t.Errorf("Terminating without deletionTimestamp: got %v; want status.phase refused", errs.ToAggregate())
	}
	deleting := proto.Clone(old).(*corev1.Namespace)
	deleting.Metadata.DeletionTimestamp = "2024-01-01T00:00:00Z"
	deleting.Status.Phase = "Terminating"
	ns = proto.Clone(deleting).(*corev1.Namespace)
	if errs := ValidateStatusUpdate(ns, deleting); len(errs) > 0 {
		t.Errorf("Terminating refused while deleting: %v", errs.ToAggregate())
	}
	ns.Status.Phase = "Active"
	if errs := ValidateStatusUpdate(ns, deleting); len(errs) != 1 || errs[0].Field != "status.phase" {
		t.Errorf("Active while deleting: got %v; want status.phase refused", errs.ToAggregate())
	}
	// A namespace being deleted may lose spec finalizers, not gain them.
	deleting.Spec = &corev1.NamespaceSpec{Finalizers: []string{"example.com/a"}}
	ns = proto.Clone(deleting).(*corev1.Namespace)
	ns.Spec.Finalizers = nil
	if errs := ValidateUpdate(ns, deleting); len(errs) > 0 {
		t.Errorf("removing a spec finalizer while deleting: %v", errs.ToAggregate())
	}
	ns.Spec.Finalizers = []string{"example.com/a", "example.com/b"}
	if errs := ValidateUpdate(ns, deleting); len(errs) != 1 || errs[0].Field != "spec.finalizers" || errs[0].Type != ErrorTypeForbidden {
		t.Errorf("adding a spec finalizer while deleting: got %v; want spec.finalizers Forbidden", errs.ToAggregate())
	}
	ns = proto.Clone(old).(*corev1.Namespace)
	ns.Status.Phase = "Gone"
	if errs := ValidateStatusUpdate(ns, old); len(errs) == 0 || errs[0].Field != "status.phase" {
		t.Errorf("bad phase: got %v", errs.ToAggregate())
	}
}

func TestValidateUpdateKindMismatch(t *testing.T) {
	errs := ValidateUpdate(validPod(), validService())
	if len(errs) != 1 || errs[0].Field != "kind" {
		t.Fatalf("got %v", errs.ToAggregate())
	}
}

// Objects straight off the wire may lack any part; validation must report, not panic.
func TestSparseObjectsDoNotPanic(t *testing.T) {
	objs := []scheme.Object{
		&corev1.Namespace{}, &corev1.Node{}, &corev1.Pod{}, &corev1.Service{}, &corev1.Endpoints{}, &corev1.Event{},
		&appsv1.ReplicaSet{}, &appsv1.Deployment{},
		&corev1.Pod{Spec: &corev1.PodSpec{Containers: []*corev1.Container{{}}, Tolerations: []*corev1.Toleration{{}},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}, PodAffinity: &corev1.PodAffinity{
				PreferredDuringSchedulingIgnoredDuringExecution: []*corev1.WeightedPodAffinityTerm{{}}}},
			Volumes: []*corev1.Volume{{}}}},
		&appsv1.Deployment{Spec: &appsv1.DeploymentSpec{Template: &corev1.PodTemplateSpec{}, Strategy: &appsv1.DeploymentStrategy{Type: "RollingUpdate"}}},
		&corev1.Service{Spec: &corev1.ServiceSpec{Ports: []*corev1.ServicePort{{}}}},
	}
	for _, o := range objs {
		if errs := Validate(o); len(errs) == 0 {
			t.Errorf("%T: empty object accepted", o)
		}
		_ = ValidateUpdate(o, o)
		_ = ValidateStatusUpdate(o, o)
		Default(proto.Clone(o).(scheme.Object))
	}
}
