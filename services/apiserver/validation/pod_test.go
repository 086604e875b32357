package validation

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func web(p *corev1.Pod) *corev1.Container { return p.Spec.Containers[0] }

func TestValidatePod(t *testing.T) {
	cases := []errCase[*corev1.Pod]{
		// metadata
		{"name missing", func(p *corev1.Pod) { p.Metadata.Name = "" }, "metadata.name", ErrorTypeRequired},
		{"name not a subdomain", func(p *corev1.Pod) { p.Metadata.Name = "Bad_Name" }, "metadata.name", ErrorTypeInvalid},
		{"metadata absent", func(p *corev1.Pod) { p.Metadata = nil }, "metadata.name", ErrorTypeRequired},
		{"namespace missing", func(p *corev1.Pod) { p.Metadata.Namespace = "" }, "metadata.namespace", ErrorTypeRequired},
		{"namespace not a label", func(p *corev1.Pod) { p.Metadata.Namespace = "team.a" }, "metadata.namespace", ErrorTypeInvalid},
		{"label key", func(p *corev1.Pod) { p.Metadata.Labels["-app"] = "x" }, "metadata.labels", ErrorTypeInvalid},
		{"label value", func(p *corev1.Pod) { p.Metadata.Labels["app"] = "web server" }, "metadata.labels", ErrorTypeInvalid},
		{"label value too long", func(p *corev1.Pod) { p.Metadata.Labels["app"] = strings.Repeat("a", 64) }, "metadata.labels", ErrorTypeInvalid},
		{"annotation key", func(p *corev1.Pod) { p.Metadata.Annotations["bad key"] = "x" }, "metadata.annotations", ErrorTypeInvalid},
		{"annotations too large", func(p *corev1.Pod) { p.Metadata.Annotations["big"] = strings.Repeat("x", 256*1024) },
			"metadata.annotations", ErrorTypeTooLong},
		{"ownerReference without uid", func(p *corev1.Pod) { p.Metadata.OwnerReferences[0].Uid = "" },
			"metadata.ownerReferences[0].uid", ErrorTypeInvalid},
		{"ownerReference without apiVersion", func(p *corev1.Pod) { p.Metadata.OwnerReferences[0].ApiVersion = "" },
			"metadata.ownerReferences[0].apiVersion", ErrorTypeInvalid},
		{"two controllers", func(p *corev1.Pod) {
			p.Metadata.OwnerReferences = append(p.Metadata.OwnerReferences, &metav1.OwnerReference{
				ApiVersion: "batch/v1", Kind: "Job", Name: "j", Uid: "u2", Controller: proto.Bool(true)})
		}, "metadata.ownerReferences", ErrorTypeInvalid},
		{"finalizer", func(p *corev1.Pod) { p.Metadata.Finalizers = []string{"example.com/a/b"} }, "metadata.finalizers", ErrorTypeInvalid},

		// containers
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, "spec.containers", ErrorTypeRequired},
		{"spec absent", func(p *corev1.Pod) { p.Spec = nil }, "spec.containers", ErrorTypeRequired},
		{"container name missing", func(p *corev1.Pod) { web(p).Name = "" }, "spec.containers[0].name", ErrorTypeRequired},
		{"container name not a label", func(p *corev1.Pod) { web(p).Name = "Web" }, "spec.containers[0].name", ErrorTypeInvalid},
		{"duplicate container name", func(p *corev1.Pod) { p.Spec.Containers[1].Name = "web" }, "spec.containers[1].name", ErrorTypeDuplicate},
		{"container name clashes with init container", func(p *corev1.Pod) { web(p).Name = "migrate" },
			"spec.containers[0].name", ErrorTypeDuplicate},
		{"image missing", func(p *corev1.Pod) { web(p).Image = "" }, "spec.containers[0].image", ErrorTypeRequired},
		{"image blank", func(p *corev1.Pod) { web(p).Image = "   " }, "spec.containers[0].image", ErrorTypeRequired},
		{"init image missing", func(p *corev1.Pod) { p.Spec.InitContainers[0].Image = "" }, "spec.initContainers[0].image", ErrorTypeRequired},
		{"pull policy", func(p *corev1.Pod) { web(p).ImagePullPolicy = "Sometimes" }, "spec.containers[0].imagePullPolicy", ErrorTypeNotSupported},

		// ports
		{"containerPort 0", func(p *corev1.Pod) { web(p).Ports[0].ContainerPort = 0 }, "spec.containers[0].ports[0].containerPort", ErrorTypeRequired},
		{"containerPort too big", func(p *corev1.Pod) { web(p).Ports[0].ContainerPort = 70000 }, "spec.containers[0].ports[0].containerPort", ErrorTypeInvalid},
		{"hostPort negative", func(p *corev1.Pod) { web(p).Ports[1].HostPort = -1 }, "spec.containers[0].ports[1].hostPort", ErrorTypeInvalid},
		{"protocol", func(p *corev1.Pod) { web(p).Ports[0].Protocol = "ICMP" }, "spec.containers[0].ports[0].protocol", ErrorTypeNotSupported},
		{"protocol empty", func(p *corev1.Pod) { web(p).Ports[0].Protocol = "" }, "spec.containers[0].ports[0].protocol", ErrorTypeRequired},
		{"port name too long", func(p *corev1.Pod) { web(p).Ports[0].Name = "http-frontend-main" }, "spec.containers[0].ports[0].name", ErrorTypeInvalid},
		{"port name only digits", func(p *corev1.Pod) { web(p).Ports[0].Name = "8080" }, "spec.containers[0].ports[0].name", ErrorTypeInvalid},
		{"port name upper case", func(p *corev1.Pod) { web(p).Ports[0].Name = "HTTP" }, "spec.containers[0].ports[0].name", ErrorTypeInvalid},
		{"duplicate port name", func(p *corev1.Pod) { web(p).Ports[1].Name = "http" }, "spec.containers[0].ports[1].name", ErrorTypeDuplicate},
		{"hostNetwork hostPort mismatch", func(p *corev1.Pod) { p.Spec.HostNetwork = true; web(p).Ports[0].HostPort = 8080 },
			"spec.containers[0].ports[0].hostPort", ErrorTypeInvalid},

		// env
		{"env name missing", func(p *corev1.Pod) { web(p).Env[0].Name = "" }, "spec.containers[0].env[0].name", ErrorTypeRequired},
		{"env name starts with digit", func(p *corev1.Pod) { web(p).Env[0].Name = "1LOG" }, "spec.containers[0].env[0].name", ErrorTypeInvalid},
		{"env value and valueFrom", func(p *corev1.Pod) { web(p).Env[1].Value = "x" }, "spec.containers[0].env[1].valueFrom", ErrorTypeInvalid},
		{"env secret key missing", func(p *corev1.Pod) { web(p).Env[2].ValueFrom.SecretKeyRef.Key = "" },
			"spec.containers[0].env[2].valueFrom.secretKeyRef.key", ErrorTypeRequired},

		// resources
		{"unparsable limit", func(p *corev1.Pod) { web(p).Resources.Limits["memory"] = "lots" }, "spec.containers[0].resources.limits[memory]", ErrorTypeInvalid},
		{"negative request", func(p *corev1.Pod) { web(p).Resources.Requests["cpu"] = "-100m" }, "spec.containers[0].resources.requests[cpu]", ErrorTypeInvalid},
		{"request above limit", func(p *corev1.Pod) { web(p).Resources.Requests["memory"] = "1Gi" }, "spec.containers[0].resources.requests[memory]", ErrorTypeInvalid},
		{"unknown resource", func(p *corev1.Pod) { web(p).Resources.Limits["gpu"] = "1" }, "spec.containers[0].resources.limits[gpu]", ErrorTypeInvalid},

		// probes
		{"probe without handler", func(p *corev1.Pod) { web(p).ReadinessProbe.TcpSocket = nil }, "spec.containers[0].readinessProbe", ErrorTypeRequired},
		{"probe with two handlers", func(p *corev1.Pod) {
			web(p).ReadinessProbe.Exec = &corev1.ExecAction{Command: []string{"true"}}
		}, "spec.containers[0].readinessProbe.tcpSocket", ErrorTypeForbidden},
		{"probe port out of range", func(p *corev1.Pod) { web(p).ReadinessProbe.TcpSocket.Port = intStr(0) },
			"spec.containers[0].readinessProbe.tcpSocket.port", ErrorTypeInvalid},
		{"probe port bad name", func(p *corev1.Pod) { web(p).LivenessProbe.HttpGet.Port = strVal("Http_Port") },
			"spec.containers[0].livenessProbe.httpGet.port", ErrorTypeInvalid},
		{"probe port missing", func(p *corev1.Pod) { web(p).LivenessProbe.HttpGet.Port = nil },
			"spec.containers[0].livenessProbe.httpGet.port", ErrorTypeRequired},
		{"probe exec without command", func(p *corev1.Pod) { p.Spec.Containers[1].LivenessProbe.Exec.Command = nil },
			"spec.containers[1].livenessProbe.exec.command", ErrorTypeRequired},
		{"probe failureThreshold 0", func(p *corev1.Pod) { web(p).ReadinessProbe.FailureThreshold = 0 },
			"spec.containers[0].readinessProbe.failureThreshold", ErrorTypeInvalid},
		{"probe negative delay", func(p *corev1.Pod) { web(p).ReadinessProbe.InitialDelaySeconds = -1 },
			"spec.containers[0].readinessProbe.initialDelaySeconds", ErrorTypeInvalid},
		{"liveness successThreshold", func(p *corev1.Pod) { web(p).LivenessProbe.SuccessThreshold = 2 },
			"spec.containers[0].livenessProbe.successThreshold", ErrorTypeInvalid},
		{"probe on init container", func(p *corev1.Pod) { p.Spec.InitContainers[0].ReadinessProbe = web(p).ReadinessProbe },
			"spec.initContainers[0].readinessProbe", ErrorTypeForbidden},

		// pod-level fields
		{"restartPolicy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" }, "spec.restartPolicy", ErrorTypeNotSupported},
		{"restartPolicy empty", func(p *corev1.Pod) { p.Spec.RestartPolicy = "" }, "spec.restartPolicy", ErrorTypeRequired},
		{"dnsPolicy", func(p *corev1.Pod) { p.Spec.DnsPolicy = "Custom" }, "spec.dnsPolicy", ErrorTypeNotSupported},
		{"negative grace period", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = proto.Int64(-1) },
			"spec.terminationGracePeriodSeconds", ErrorTypeInvalid},
		{"activeDeadlineSeconds 0", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = proto.Int64(0) },
			"spec.activeDeadlineSeconds", ErrorTypeInvalid},
		{"nodeSelector key", func(p *corev1.Pod) { p.Spec.NodeSelector["kubernetes.io/"] = "x" }, "spec.nodeSelector", ErrorTypeInvalid},
		{"nodeSelector value", func(p *corev1.Pod) { p.Spec.NodeSelector["kubernetes.io/os"] = "linux!" }, "spec.nodeSelector", ErrorTypeInvalid},
		{"nodeName", func(p *corev1.Pod) { p.Spec.NodeName = "Worker_1" }, "spec.nodeName", ErrorTypeInvalid},

		// tolerations
		{"toleration operator", func(p *corev1.Pod) { p.Spec.Tolerations[1].Operator = "Matches" }, "spec.tolerations[1].operator", ErrorTypeNotSupported},
		{"toleration Exists with value", func(p *corev1.Pod) { p.Spec.Tolerations[0].Value = "true" }, "spec.tolerations[0].value", ErrorTypeInvalid},
		{"toleration effect", func(p *corev1.Pod) { p.Spec.Tolerations[1].Effect = "NoRun" }, "spec.tolerations[1].effect", ErrorTypeNotSupported},
		{"tolerationSeconds without NoExecute", func(p *corev1.Pod) { p.Spec.Tolerations[1].TolerationSeconds = proto.Int64(60) },
			"spec.tolerations[1].effect", ErrorTypeInvalid},
		{"toleration key", func(p *corev1.Pod) { p.Spec.Tolerations[1].Key = "dedicated node" }, "spec.tolerations[1].key", ErrorTypeInvalid},
		{"empty key with Equal", func(p *corev1.Pod) { p.Spec.Tolerations[1].Key = "" }, "spec.tolerations[1].operator", ErrorTypeInvalid},

		// affinity
		{"node affinity without terms", func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms = nil
		}, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms", ErrorTypeRequired},
		{"node affinity In without values", func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values = nil
		}, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values", ErrorTypeRequired},
		{"node affinity Exists with values", func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Preference.MatchExpressions[0].Values = []string{"m5"}
		}, "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].values", ErrorTypeForbidden},
		{"node affinity Gt not an integer", func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[1].Values = []string{"four"}
		}, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values[0]", ErrorTypeInvalid},
		{"node affinity Lt two values", func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[1].Values = []string{"1", "2"}
		}, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values", ErrorTypeRequired},
		{"node affinity operator", func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Operator = "Like"
		}, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator", ErrorTypeNotSupported},
		{"preferred weight 0", func(p *corev1.Pod) {
			p.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Weight = 0
		},
			"spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight", ErrorTypeInvalid},
		{"anti-affinity weight 101", func(p *corev1.Pod) {
			p.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Weight = 101
		},
			"spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight", ErrorTypeInvalid},
		{"anti-affinity without topologyKey", func(p *corev1.Pod) {
			p.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey = ""
		}, "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey", ErrorTypeRequired},
		{"pod affinity bad selector", func(p *corev1.Pod) {
			p.Spec.Affinity.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []*corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "app", Operator: "In"}}},
				TopologyKey:   "topology.kubernetes.io/zone",
			}}}
		}, "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].values", ErrorTypeRequired},

		// volumes
		{"volume name missing", func(p *corev1.Pod) { p.Spec.Volumes[0].Name = "" }, "spec.volumes[0].name", ErrorTypeRequired},
		{"volume name not a label", func(p *corev1.Pod) { p.Spec.Volumes[0].Name = "my_cache" }, "spec.volumes[0].name", ErrorTypeInvalid},
		{"duplicate volume", func(p *corev1.Pod) { p.Spec.Volumes[1].Name = "cache" }, "spec.volumes[1].name", ErrorTypeDuplicate},
		{"volume without source", func(p *corev1.Pod) { p.Spec.Volumes[1].ConfigMap = nil }, "spec.volumes[1]", ErrorTypeRequired},
		{"volume with two sources", func(p *corev1.Pod) { p.Spec.Volumes[1].EmptyDir = &corev1.EmptyDirVolumeSource{} },
			"spec.volumes[1].configMap", ErrorTypeForbidden},
		{"emptyDir sizeLimit", func(p *corev1.Pod) { p.Spec.Volumes[0].EmptyDir.SizeLimit = "1 GB" }, "spec.volumes[0].emptyDir.sizeLimit", ErrorTypeInvalid},
		{"mount of unknown volume", func(p *corev1.Pod) { web(p).VolumeMounts[0].Name = "data" }, "spec.containers[0].volumeMounts[0].name", ErrorTypeNotFound},
		{"mount without path", func(p *corev1.Pod) { web(p).VolumeMounts[1].MountPath = "" }, "spec.containers[0].volumeMounts[1].mountPath", ErrorTypeRequired},
		{"mount subPath escapes", func(p *corev1.Pod) { web(p).VolumeMounts[0].SubPath = "../etc" }, "spec.containers[0].volumeMounts[0].subPath", ErrorTypeInvalid},
	}
	runErrCases(t, validPod, validate[*corev1.Pod], cases)
}

// Spot-check that messages read as Kubernetes' do.
func TestPodErrorMessages(t *testing.T) {
	pod := validPod()
	pod.Metadata.Name = "Bad_Name"
	web(pod).Image = ""
	web(pod).Resources.Limits["memory"] = "lots"
	pod.Spec.RestartPolicy = "Sometimes"
	errs := Validate(pod)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain`,
		`spec.containers[0].image: Required value`,
		`spec.containers[0].resources.limits[memory]: Invalid value: "lots": must be a valid quantity`,
		`spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
}

func TestValidatePodValidVariants(t *testing.T) {
	variants := map[string]func(*corev1.Pod){
		"minimal": func(p *corev1.Pod) {
			p.Spec = &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}
			Default(p)
		},
		"toleration all":      func(p *corev1.Pod) { p.Spec.Tolerations = []*corev1.Toleration{{Operator: "Exists"}} },
		"udp and sctp":        func(p *corev1.Pod) { web(p).Ports[0].Protocol = "UDP"; web(p).Ports[1].Protocol = "SCTP" },
		"extended resource":   func(p *corev1.Pod) { web(p).Resources.Limits["example.com/gpu"] = "1" },
		"hostNetwork default": func(p *corev1.Pod) { p.Spec.HostNetwork = true; Default(p) },
		"grace period 0":      func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = proto.Int64(0) },
		"restart Never":       func(p *corev1.Pod) { p.Spec.RestartPolicy = "Never"; p.Spec.ActiveDeadlineSeconds = proto.Int64(600) },
		"dnsPolicy None":      func(p *corev1.Pod) { p.Spec.DnsPolicy = "None" },
		"generated name":      func(p *corev1.Pod) { p.Metadata.GenerateName = "web-"; p.Metadata.Name = "web-abcde" },
		"upper-case annotation key": func(p *corev1.Pod) {
			p.Metadata.Annotations["Example.com/Owner"] = "team-a"
		},
		"volume defaulted to emptyDir": func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, &corev1.Volume{Name: "scratch"})
			Default(p)
		},
	}
	for name, mutate := range variants {
		t.Run(name, func(t *testing.T) {
			p := validPod()
			mutate(p)
			if errs := Validate(p); len(errs) > 0 {
				t.Fatalf("refused: %v", errs.ToAggregate())
			}
		})
	}
}

func TestValidatePodUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		field  string // "" means the update is allowed
		typ    ErrorType
	}{
		{"no change", func(*corev1.Pod) {}, "", ""},
		{"image change", func(p *corev1.Pod) { web(p).Image = "nginx:1.25.4" }, "", ""},
		{"init image change", func(p *corev1.Pod) { p.Spec.InitContainers[0].Image = "registry.example.com/web/migrate:v1.4.3" }, "", ""},
		{"labels change", func(p *corev1.Pod) { p.Metadata.Labels["canary"] = "true" }, "", ""},
		{"add toleration", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, &corev1.Toleration{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute", TolerationSeconds: proto.Int64(300)})
		}, "", ""},
		{"change tolerationSeconds", func(p *corev1.Pod) { p.Spec.Tolerations[0].TolerationSeconds = proto.Int64(30) }, "", ""},
		{"shorten deadline", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = proto.Int64(1800) }, "", ""},
		{"set deadline", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = proto.Int64(3600) }, "", ""},

		{"change env", func(p *corev1.Pod) { web(p).Env[0].Value = "debug" }, "spec", ErrorTypeForbidden},
		{"change restartPolicy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Never" }, "spec", ErrorTypeForbidden},
		{"add container", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, &corev1.Container{Name: "debug", Image: "busybox", ImagePullPolicy: "Always"})
		}, "spec.containers", ErrorTypeForbidden},
		{"remove toleration", func(p *corev1.Pod) { p.Spec.Tolerations = p.Spec.Tolerations[:1] }, "spec.tolerations", ErrorTypeForbidden},
		{"modify toleration", func(p *corev1.Pod) { p.Spec.Tolerations[1].Value = "api" }, "spec.tolerations", ErrorTypeForbidden},
		{"lengthen deadline", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = proto.Int64(7200) }, "spec.activeDeadlineSeconds", ErrorTypeInvalid},
		{"set nodeName by update", func(p *corev1.Pod) { p.Spec.NodeName = "worker-2" }, "spec", ErrorTypeForbidden},
		{"rename", func(p *corev1.Pod) { p.Metadata.Name = "web-2" }, "metadata.name", ErrorTypeInvalid},
		{"move namespace", func(p *corev1.Pod) { p.Metadata.Namespace = "prod" }, "metadata.namespace", ErrorTypeInvalid},
		{"invalid new image", func(p *corev1.Pod) { web(p).Image = "" }, "spec.containers[0].image", ErrorTypeRequired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old := validPod()
			if c.name == "shorten deadline" || c.name == "lengthen deadline" {
				old.Spec.ActiveDeadlineSeconds = proto.Int64(3600)
			}
			pod := proto.Clone(old).(*corev1.Pod)
			c.mutate(pod)
			errs := ValidateUpdate(pod, old)
			if c.field == "" {
				if len(errs) > 0 {
					t.Fatalf("refused: %v", errs.ToAggregate())
				}
				return
			}
			if len(errs) == 0 {
				t.Fatalf("accepted; want %s at %s", c.typ, c.field)
			}
			if errs[0].Field != c.field || errs[0].Type != c.typ {
				t.Fatalf("first error %q (%s); want %s at %s\nall: %v", errs[0].Field, errs[0].Type, c.typ, c.field, errs.ToAggregate())
			}
		})
	}
}

func TestPodUpdateMessageNamesChangedFields(t *testing.T) {
	old := validPod()
	pod := proto.Clone(old).(*corev1.Pod)
	pod.Spec.NodeSelector["disk"] = "ssd"
	pod.Spec.Hostname = "web-0"
	errs := ValidateUpdate(pod, old)
	if len(errs) != 1 {
		t.Fatalf("want one error, got %v", errs.ToAggregate())
	}
	msg := errs[0].Error()
	for _, want := range []string{"spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`",
		"changed: spec.nodeSelector, spec.hostname"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestPodNodeNameImmutable(t *testing.T) {
	old := validPod()
	old.Spec.NodeName = "worker-1"
	pod := proto.Clone(old).(*corev1.Pod)
	pod.Spec.NodeName = "worker-2"
	errs := ValidateUpdate(pod, old)
	if len(errs) != 1 || errs[0].Field != "spec.nodeName" || errs[0].Type != ErrorTypeInvalid {
		t.Fatalf("got %v; want one invalid spec.nodeName", errs.ToAggregate())
	}
}

func TestValidatePodStatusUpdate(t *testing.T) {
	old := validPod()
	old.Status = &corev1.PodStatus{Phase: "Pending"}
	for _, phase := range []string{"", "Pending", "Running", "Succeeded", "Failed", "Unknown"} {
		pod := proto.Clone(old).(*corev1.Pod)
		pod.Status = &corev1.PodStatus{Phase: phase, PodIp: "10.244.1.7", HostIp: "192.168.1.11",
			PodIps: []*corev1.PodIP{{Ip: "10.244.1.7"}}, Conditions: []*corev1.PodCondition{{Type: "Ready", Status: "True"}},
			ContainerStatuses: []*corev1.ContainerStatus{{Name: "web", Ready: true, RestartCount: 2}}}
		if errs := ValidateStatusUpdate(pod, old); len(errs) > 0 {
			t.Errorf("phase %q refused: %v", phase, errs.ToAggregate())
		}
	}
	cases := []struct {
		name  string
		st    *corev1.PodStatus
		field string
		typ   ErrorType
	}{
		{"phase", &corev1.PodStatus{Phase: "Completed"}, "status.phase", ErrorTypeNotSupported},
		{"podIP", &corev1.PodStatus{Phase: "Running", PodIp: "10.244.1"}, "status.podIP", ErrorTypeInvalid},
		{"podIPs", &corev1.PodStatus{Phase: "Running", PodIps: []*corev1.PodIP{{Ip: "x"}}}, "status.podIPs[0].ip", ErrorTypeInvalid},
		{"restartCount", &corev1.PodStatus{ContainerStatuses: []*corev1.ContainerStatus{{Name: "web", RestartCount: -1}}},
			"status.containerStatuses[0].restartCount", ErrorTypeInvalid},
	}
	for _, c := range cases {
		pod := proto.Clone(old).(*corev1.Pod)
		pod.Status = c.st
		errs := ValidateStatusUpdate(pod, old)
		if len(errs) == 0 || errs[0].Field != c.field || errs[0].Type != c.typ {
			t.Errorf("%s: got %v; want %s at %s", c.name, errs.ToAggregate(), c.typ, c.field)
		}
	}
}
