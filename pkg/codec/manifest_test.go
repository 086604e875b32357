package codec

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// webYAML is an ordinary Kubernetes manifest, with fields Skiff does not model.
const webYAML = `# A typical web app.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels:
    app: web
    version: "1"
spec:
  replicas: 3
  revisionHistoryLimit: 0
  selector:
    matchLabels:
      app: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        app: web
    spec:
      imagePullSecrets:
      - name: regcred
      securityContext:
        runAsNonRoot: true
      terminationGracePeriodSeconds: 30
      containers:
      - name: nginx
        image: nginx:1.25
        imagePullPolicy: IfNotPresent
        args: ["--port", "8080"]
        ports:
        - name: http
          containerPort: 8080
          protocol: TCP
        env:
        - name: GREETING
          value: "hello: world"
        resources:
          limits:
            cpu: 500m
            memory: 128Mi
          requests:
            cpu: 100m
        securityContext:
          readOnlyRootFilesystem: true
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          periodSeconds: 10
--- # the service
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: ClusterIP
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
    protocol: TCP
  - name: raw
    port: 81
    targetPort: 8080
---
# Only a comment: skipped.
---   
`

func wantWebDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ApiVersion: "apps/v1",
		Kind:       "Deployment",
		Metadata: &metav1.ObjectMeta{
			Name: "web", Namespace: "default",
			Labels: map[string]string{"app": "web", "version": "1"},
		},
		Spec: &appsv1.DeploymentSpec{
			Replicas:             proto.Int32(3),
			RevisionHistoryLimit: proto.Int32(0),
			Selector:             &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Strategy: &appsv1.DeploymentStrategy{
				Type: "RollingUpdate",
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "25%"}},
					MaxUnavailable: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 0}},
				},
			},
			Template: &corev1.PodTemplateSpec{
				Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: &corev1.PodSpec{
					TerminationGracePeriodSeconds: proto.Int64(30),
					Containers: []*corev1.Container{{
						Name:            "nginx",
						Image:           "nginx:1.25",
						ImagePullPolicy: "IfNotPresent",
						Args:            []string{"--port", "8080"},
						Ports:           []*corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}},
						Env:             []*corev1.EnvVar{{Name: "GREETING", Value: "hello: world"}},
						Resources: &corev1.ResourceRequirements{
							Limits:   map[string]string{"cpu": "500m", "memory": "128Mi"},
							Requests: map[string]string{"cpu": "100m"},
						},
						ReadinessProbe: &corev1.Probe{
							HttpGet:       &corev1.HTTPGetAction{Path: "/healthz", Port: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "http"}}},
							PeriodSeconds: 10,
						},
					}},
				},
			},
		},
	}
}

func wantWebService() *corev1.Service {
	return &corev1.Service{
		ApiVersion: "v1",
		Kind:       "Service",
		Metadata:   &metav1.ObjectMeta{Name: "web"},
		Spec: &corev1.ServiceSpec{
			Type:     "ClusterIP",
			Selector: map[string]string{"app": "web"},
			Ports: []*corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: "TCP", TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "http"}}},
				{Name: "raw", Port: 81, TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 8080}}},
			},
		},
	}
}

func TestDecodeManifestsYAML(t *testing.T) {
	ms, err := DecodeManifests([]byte(webYAML), scheme.Default())
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 {
		t.Fatalf("got %d manifests, want 2", len(ms))
	}

	if ms[0].Kind.Kind != "Deployment" || ms[0].Index != 1 {
		t.Errorf("manifest 0: kind %s index %d, want Deployment 1", ms[0].Kind.Kind, ms[0].Index)
	}
	if !proto.Equal(ms[0].Object, wantWebDeployment()) {
		t.Errorf("deployment:\n got %v\nwant %v", ms[0].Object, wantWebDeployment())
	}
	// sigs.k8s.io/yaml sorts keys, so unknown fields come in key order.
	wantUnknown := []string{
		"spec.template.spec.containers[0].securityContext",
		"spec.template.spec.imagePullSecrets",
		"spec.template.spec.securityContext",
	}
	if !slices.Equal(ms[0].Unknown, wantUnknown) {
		t.Errorf("deployment unknown fields:\n got %q\nwant %q", ms[0].Unknown, wantUnknown)
	}

	if ms[1].Kind.Kind != "Service" || ms[1].Index != 2 {
		t.Errorf("manifest 1: kind %s index %d, want Service 2", ms[1].Kind.Kind, ms[1].Index)
	}
	if !proto.Equal(ms[1].Object, wantWebService()) {
		t.Errorf("service:\n got %v\nwant %v", ms[1].Object, wantWebService())
	}
	if len(ms[1].Unknown) != 0 {
		t.Errorf("service unknown fields: %q", ms[1].Unknown)
	}
}

func TestDecodeManifestsJSON(t *testing.T) {
	dep := string(mustMarshal(t, wantWebDeployment()))
	svc := string(mustMarshal(t, wantWebService()))
	tests := []struct {
		name string
		in   string
	}{
		{"stream of objects", dep + "\n" + svc},
		{"List", `{"apiVersion":"v1","kind":"List","metadata":{},"items":[` + dep + "," + svc + `]}`},
		{"typed list", `{"apiVersion":"v1","kind":"ServiceList","items":[` + dep + "," + svc + `]}`},
		{"YAML List", "apiVersion: v1\nkind: List\nitems:\n- " + dep + "\n- " + svc + "\n"},
		{"YAML flow style", "{apiVersion: v1, kind: List, items: [" + dep + ", " + svc + "]}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := DecodeManifests([]byte(tt.in), scheme.Default())
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 2 {
				t.Fatalf("got %d manifests, want 2", len(ms))
			}
			if !proto.Equal(ms[0].Object, wantWebDeployment()) || ms[0].Kind.Kind != "Deployment" {
				t.Errorf("first object: %v", ms[0].Object)
			}
			if !proto.Equal(ms[1].Object, wantWebService()) || ms[1].Kind.Kind != "Service" {
				t.Errorf("second object: %v", ms[1].Object)
			}
		})
	}
}

func TestDecodeManifestsEmpty(t *testing.T) {
	for _, in := range []string{"", "\n", "# nothing\n", "---\n---\n# c\n", "null"} {
		ms, err := DecodeManifests([]byte(in), scheme.Default())
		if err != nil || len(ms) != 0 {
			t.Errorf("DecodeManifests(%q) = %v, %v; want nothing", in, ms, err)
		}
	}
}

func TestDecodeManifestsErrors(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"unknown kind", pod + "---\napiVersion: v1\nkind: Widget\n", `document 2: no kind "Widget" is registered for version "v1"`},
		{"wrong group", "apiVersion: v1\nkind: Deployment\n", `document 1: no kind "Deployment" is registered for version "v1"`},
		{"missing kind", "# c\n---\n" + pod + "---\napiVersion: v1\nmetadata: {}\n", "document 2: missing kind"},
		{"missing apiVersion", "kind: Pod\n", `document 1: missing apiVersion for kind "Pod"`},
		{"kind not a string", `{"apiVersion":"v1","kind":7}`, "document 1: kind must be a string, got number"},
		{"not an object", pod + "---\n- a\n- b\n", "document 2: expected an object, got array"},
		{"bad field names the object", pod + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1.5\n", `document 2 (Deployment "web"): spec.replicas: cannot unmarshal 1.5 into int32`},
		{"label number", "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    version: 1\n", "document 1 (Pod): metadata.labels[version]: cannot unmarshal 1 into string"},
		{"list item", `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod"},{"apiVersion":"v1","kind":"Nope"}]}`, `document 1: items[1]: no kind "Nope" is registered for version "v1"`},
		{"list items not array", `{"apiVersion":"v1","kind":"List","items":{}}`, "document 1: items: expected an array, got object"},
		{"bad YAML", pod + "---\nkind: [\n", "document 2: "},
		{"bad JSON", `{"apiVersion":"v1","kind":"Pod"} {"kind":`, "document 2: invalid JSON: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := DecodeManifests([]byte(tt.in), scheme.Default())
			if err == nil {
				t.Fatalf("DecodeManifests succeeded with %d objects, want error %q", len(ms), tt.want)
			}
			if strings.HasSuffix(tt.want, ": ") {
				if !strings.HasPrefix(err.Error(), tt.want) {
					t.Errorf("error %q, want prefix %q", err, tt.want)
				}
			} else if err.Error() != tt.want {
				t.Errorf("error:\n got %q\nwant %q", err, tt.want)
			}
		})
	}
}

func TestSplitYAML(t *testing.T) {
	in := "a: 1\n---\nb: 2\n--- # c\r\nc: 3\n---#not a separator\n  ---\n----\nd: |\n  ---\n"
	var got []string
	for _, d := range splitYAML([]byte(in)) {
		got = append(got, string(d))
	}
	want := []string{"a: 1\n", "b: 2\n", "c: 3\n---#not a separator\n  ---\n----\nd: |\n  ---\n"}
	if !slices.Equal(got, want) {
		t.Errorf("splitYAML:\n got %q\nwant %q", got, want)
	}
}
