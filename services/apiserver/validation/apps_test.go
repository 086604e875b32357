package validation

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestValidateReplicaSet(t *testing.T) {
	cases := []errCase[*appsv1.ReplicaSet]{
		{"name", func(r *appsv1.ReplicaSet) { r.Metadata.Name = "web_rs" }, "metadata.name", ErrorTypeInvalid},
		{"replicas negative", func(r *appsv1.ReplicaSet) { r.Spec.Replicas = proto.Int32(-1) }, "spec.replicas", ErrorTypeInvalid},
		{"minReadySeconds negative", func(r *appsv1.ReplicaSet) { r.Spec.MinReadySeconds = -5 }, "spec.minReadySeconds", ErrorTypeInvalid},
		{"selector missing", func(r *appsv1.ReplicaSet) { r.Spec.Selector = nil }, "spec.selector", ErrorTypeRequired},
		{"selector empty", func(r *appsv1.ReplicaSet) { r.Spec.Selector = &metav1.LabelSelector{} }, "spec.selector", ErrorTypeInvalid},
		{"selector bad operator", func(r *appsv1.ReplicaSet) {
			r.Spec.Selector.MatchExpressions = []*metav1.LabelSelectorRequirement{{Key: "tier", Operator: "Equals", Values: []string{"x"}}}
		}, "spec.selector.matchExpressions[0].operator", ErrorTypeInvalid},
		{"selector bad label value", func(r *appsv1.ReplicaSet) { r.Spec.Selector.MatchLabels["app"] = "web!" },
			"spec.selector.matchLabels", ErrorTypeInvalid},
		{"selector does not match", func(r *appsv1.ReplicaSet) { r.Spec.Template.Metadata.Labels["app"] = "api" },
			"spec.template.metadata.labels", ErrorTypeInvalid},
		{"template without labels", func(r *appsv1.ReplicaSet) { r.Spec.Template.Metadata = nil }, "spec.template.metadata.labels", ErrorTypeInvalid},
		{"template missing", func(r *appsv1.ReplicaSet) { r.Spec.Template = nil }, "spec.template", ErrorTypeRequired},
		{"template label key", func(r *appsv1.ReplicaSet) { r.Spec.Template.Metadata.Labels["bad key"] = "x" },
			"spec.template.metadata.labels", ErrorTypeInvalid},
		{"template container image", func(r *appsv1.ReplicaSet) { r.Spec.Template.Spec.Containers[0].Image = "" },
			"spec.template.spec.containers[0].image", ErrorTypeRequired},
		{"template port", func(r *appsv1.ReplicaSet) { r.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort = -80 },
			"spec.template.spec.containers[0].ports[0].containerPort", ErrorTypeInvalid},
		{"template restartPolicy", func(r *appsv1.ReplicaSet) { r.Spec.Template.Spec.RestartPolicy = "OnFailure" },
			"spec.template.spec.restartPolicy", ErrorTypeNotSupported},
		{"template activeDeadlineSeconds", func(r *appsv1.ReplicaSet) { r.Spec.Template.Spec.ActiveDeadlineSeconds = proto.Int64(60) },
			"spec.template.spec.activeDeadlineSeconds", ErrorTypeInvalid},
	}
	runErrCases(t, validReplicaSet, validate[*appsv1.ReplicaSet], cases)
}

func TestValidateDeployment(t *testing.T) {
	cases := []errCase[*appsv1.Deployment]{
		{"namespace missing", func(d *appsv1.Deployment) { d.Metadata.Namespace = "" }, "metadata.namespace", ErrorTypeRequired},
		{"replicas negative", func(d *appsv1.Deployment) { d.Spec.Replicas = proto.Int32(-2) }, "spec.replicas", ErrorTypeInvalid},
		{"selector missing", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, "spec.selector", ErrorTypeRequired},
		{"selector In without values", func(d *appsv1.Deployment) { d.Spec.Selector.MatchExpressions[0].Values = nil },
			"spec.selector.matchExpressions[0].values", ErrorTypeRequired},
		{"expression does not match", func(d *appsv1.Deployment) { d.Spec.Template.Metadata.Labels["tier"] = "backend" },
			"spec.template.metadata.labels", ErrorTypeInvalid},
		{"template volume", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Volumes[0].Name = "" },
			"spec.template.spec.volumes[0].name", ErrorTypeRequired},
		{"template restartPolicy Never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = "Never" },
			"spec.template.spec.restartPolicy", ErrorTypeNotSupported},
		{"strategy type", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" }, "spec.strategy.type", ErrorTypeNotSupported},
		{"rollingUpdate with Recreate", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "Recreate" },
			"spec.strategy.rollingUpdate", ErrorTypeForbidden},
		{"maxSurge bad percent", func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate.MaxSurge = strVal("25") },
			"spec.strategy.rollingUpdate.maxSurge", ErrorTypeInvalid},
		{"maxUnavailable negative", func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate.MaxUnavailable = intStr(-1) },
			"spec.strategy.rollingUpdate.maxUnavailable", ErrorTypeInvalid},
		{"both zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate.MaxUnavailable, d.Spec.Strategy.RollingUpdate.MaxSurge = intStr(0), strVal("0%")
		}, "spec.strategy.rollingUpdate.maxUnavailable", ErrorTypeInvalid},
		{"maxUnavailable above 100%", func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate.MaxUnavailable = strVal("150%") },
			"spec.strategy.rollingUpdate.maxUnavailable", ErrorTypeInvalid},
		{"revisionHistoryLimit negative", func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = proto.Int32(-1) },
			"spec.revisionHistoryLimit", ErrorTypeInvalid},
		{"minReadySeconds negative", func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = -1 }, "spec.minReadySeconds", ErrorTypeInvalid},
		{"progressDeadline not above minReady", func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = proto.Int32(10) },
			"spec.progressDeadlineSeconds", ErrorTypeInvalid},
	}
	runErrCases(t, validDeployment, validate[*appsv1.Deployment], cases)

	for name, mutate := range map[string]func(*appsv1.Deployment){
		"recreate": func(d *appsv1.Deployment) { d.Spec.Strategy = &appsv1.DeploymentStrategy{Type: "Recreate"} },
		"surge only": func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: intStr(0), MaxSurge: intStr(1)}
		},
		"zero replicas":         func(d *appsv1.Deployment) { d.Spec.Replicas = proto.Int32(0) },
		"paused":                func(d *appsv1.Deployment) { d.Spec.Paused = true },
		"zero revision history": func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = proto.Int32(0) },
	} {
		d := validDeployment()
		mutate(d)
		if errs := Validate(d); len(errs) > 0 {
			t.Errorf("%s refused: %v", name, errs.ToAggregate())
		}
	}
}

func TestSelectorMismatchMessage(t *testing.T) {
	d := validDeployment()
	d.Spec.Template.Metadata.Labels = map[string]string{"app": "api", "tier": "frontend"}
	errs := Validate(d)
	if len(errs) == 0 {
		t.Fatal("accepted")
	}
	want := `spec.template.metadata.labels: Invalid value: map[string]string{"app":"api", "tier":"frontend"}: selector does not match template labels`
	if got := errs[0].Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestValidateWorkloadUpdate(t *testing.T) {
	oldD := validDeployment()
	d := proto.Clone(oldD).(*appsv1.Deployment)
	d.Spec.Replicas = proto.Int32(10)
	d.Spec.Template.Spec.Containers[0].Image = "nginx:1.26.0"
	d.Spec.Template.Spec.Containers[0].Env = append(d.Spec.Template.Spec.Containers[0].Env, &corev1.EnvVar{Name: "FEATURE_X", Value: "on"})
	d.Spec.Template.Metadata.Labels["version"] = "v2"
	if errs := ValidateUpdate(d, oldD); len(errs) > 0 {
		t.Fatalf("rollout refused: %v", errs.ToAggregate())
	}

	d = proto.Clone(oldD).(*appsv1.Deployment)
	d.Spec.Selector.MatchLabels["version"] = "v2"
	d.Spec.Template.Metadata.Labels["version"] = "v2"
	errs := ValidateUpdate(d, oldD)
	if len(errs) != 1 || errs[0].Field != "spec.selector" || errs[0].Type != ErrorTypeInvalid {
		t.Fatalf("deployment selector change: got %v", errs.ToAggregate())
	}
	if !strings.Contains(errs[0].Error(), "field is immutable") {
		t.Errorf("message: %s", errs[0].Error())
	}

	oldRS := validReplicaSet()
	rs := proto.Clone(oldRS).(*appsv1.ReplicaSet)
	rs.Spec.Replicas = proto.Int32(0)
	if errs := ValidateUpdate(rs, oldRS); len(errs) > 0 {
		t.Fatalf("scale to zero refused: %v", errs.ToAggregate())
	}
	rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "frontend"}}
	if errs := ValidateUpdate(rs, oldRS); len(errs) != 1 || errs[0].Field != "spec.selector" {
		t.Fatalf("replicaset selector change: got %v", errs.ToAggregate())
	}
	rs = proto.Clone(oldRS).(*appsv1.ReplicaSet)
	rs.Metadata.Name = "web-other"
	if errs := ValidateUpdate(rs, oldRS); len(errs) != 1 || errs[0].Field != "metadata.name" {
		t.Fatalf("rename: got %v", errs.ToAggregate())
	}
}

func TestValidateWorkloadStatus(t *testing.T) {
	oldRS := validReplicaSet()
	rs := proto.Clone(oldRS).(*appsv1.ReplicaSet)
	rs.Status = &appsv1.ReplicaSetStatus{Replicas: 3, FullyLabeledReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 2, ObservedGeneration: 1}
	if errs := ValidateStatusUpdate(rs, oldRS); len(errs) > 0 {
		t.Fatalf("refused: %v", errs.ToAggregate())
	}
	rs.Status.AvailableReplicas = 3
	if errs := ValidateStatusUpdate(rs, oldRS); len(errs) == 0 || errs[0].Field != "status.availableReplicas" {
		t.Fatalf("available > ready: got %v", errs.ToAggregate())
	}
	rs.Status = &appsv1.ReplicaSetStatus{Replicas: -1}
	if errs := ValidateStatusUpdate(rs, oldRS); len(errs) == 0 || errs[0].Field != "status.replicas" || errs[0].Type != ErrorTypeInvalid {
		t.Fatalf("negative replicas: got %v", errs.ToAggregate())
	}

	oldD := validDeployment()
	d := proto.Clone(oldD).(*appsv1.Deployment)
	d.Status = &appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 4, UpdatedReplicas: 2, ReadyReplicas: 3, AvailableReplicas: 3, UnavailableReplicas: 1}
	if errs := ValidateStatusUpdate(d, oldD); len(errs) > 0 {
		t.Fatalf("refused: %v", errs.ToAggregate())
	}
	d.Status.UpdatedReplicas = 5
	if errs := ValidateStatusUpdate(d, oldD); len(errs) == 0 || errs[0].Field != "status.updatedReplicas" {
		t.Fatalf("updated > replicas: got %v", errs.ToAggregate())
	}
}
