package codec

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestUnmarshalValues(t *testing.T) {
	tests := []struct {
		name string
		in   string
		into proto.Message
		want proto.Message
	}{
		{
			name: "JSON names",
			in:   `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","generation":2,"deletionGracePeriodSeconds":0}}`,
			into: &corev1.Pod{},
			want: &corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "a", Generation: 2, DeletionGracePeriodSeconds: proto.Int64(0)}},
		},
		{
			name: "proto names",
			in:   `{"api_version":"v1","status":{"pod_ip":"10.0.0.1","host_ip":"h"}}`,
			into: &corev1.Pod{},
			want: &corev1.Pod{ApiVersion: "v1", Status: &corev1.PodStatus{PodIp: "10.0.0.1", HostIp: "h"}},
		},
		{
			name: "optional zero is kept, null is unset",
			in:   `{"spec":{"replicas":0,"revisionHistoryLimit":null,"selector":null}}`,
			into: &appsv1.Deployment{},
			want: &appsv1.Deployment{Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(0)}},
		},
		{
			name: "empty object sets the message",
			in:   `{"spec":{},"status":{}}`,
			into: &appsv1.Deployment{},
			want: &appsv1.Deployment{Spec: &appsv1.DeploymentSpec{}, Status: &appsv1.DeploymentStatus{}},
		},
		{
			name: "integral numbers in other spellings and int64 strings",
			in:   `{"spec":{"replicas":3.0,"minReadySeconds":1e1,"revisionHistoryLimit":-0,"progressDeadlineSeconds":12.50e1},"metadata":{"generation":"9007199254740993","deletionGracePeriodSeconds":"-5"}}`,
			into: &appsv1.Deployment{},
			want: &appsv1.Deployment{
				Metadata: &metav1.ObjectMeta{Generation: 9007199254740993, DeletionGracePeriodSeconds: proto.Int64(-5)},
				Spec:     &appsv1.DeploymentSpec{Replicas: proto.Int32(3), MinReadySeconds: 10, RevisionHistoryLimit: proto.Int32(0), ProgressDeadlineSeconds: proto.Int32(125)},
			},
		},
		{
			name: "int64 limits",
			in:   `{"metadata":{"generation":9223372036854775807,"deletionGracePeriodSeconds":-9223372036854775808}}`,
			into: &corev1.Pod{},
			want: &corev1.Pod{Metadata: &metav1.ObjectMeta{Generation: 9223372036854775807, DeletionGracePeriodSeconds: proto.Int64(-9223372036854775808)}},
		},
		{
			name: "IntOrString number and string",
			in:   `{"ports":[{"port":80,"targetPort":8080},{"port":443,"targetPort":"https"},{"port":1,"targetPort":null}]}`,
			into: &corev1.ServiceSpec{},
			want: &corev1.ServiceSpec{Ports: []*corev1.ServicePort{
				{Port: 80, TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 8080}}},
				{Port: 443, TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "https"}}},
				{Port: 1},
			}},
		},
		{
			name: "escapes and unicode",
			in:   `{"name":"a\"b\\c\n\u003c\u00e9\ud83d\ude00 é","namespace":"\ud800"}`,
			into: &metav1.ObjectMeta{},
			want: &metav1.ObjectMeta{Name: "a\"b\\c\n<é😀 é", Namespace: "\ufffd"},
		},
		{
			name: "repeated fields are replaced, messages and maps merged",
			in:   `{"finalizers":["a","b"],"finalizers":["c"],"labels":{"x":"1"},"labels":{"y":"2"}}`,
			into: &metav1.ObjectMeta{},
			want: &metav1.ObjectMeta{Finalizers: []string{"c"}, Labels: map[string]string{"x": "1", "y": "2"}},
		},
		{
			name: "unmarshal resets the target",
			in:   `{"kind":"Pod"}`,
			into: &corev1.Pod{ApiVersion: "stale", Metadata: &metav1.ObjectMeta{Name: "stale"}},
			want: &corev1.Pod{Kind: "Pod"},
		},
		{
			name: "unknown fields of every shape are skipped",
			in:   ` { "x" : [ {"a":[1,2,{"b":"}]\""}]} ], "y":null, "z":true, "w":-1.5e3 , "kind" : "Pod" } `,
			into: &corev1.Pod{},
			want: &corev1.Pod{Kind: "Pod"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Unmarshal([]byte(tt.in), tt.into); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !proto.Equal(tt.into, tt.want) {
				t.Errorf("Unmarshal:\n got %v\nwant %v", tt.into, tt.want)
			}
		})
	}
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		into proto.Message
		want string // the exact error
	}{
		{"fraction", `{"spec":{"replicas":1.5}}`, &appsv1.Deployment{}, "spec.replicas: cannot unmarshal 1.5 into int32"},
		{"fraction in exponent form", `{"spec":{"replicas":15e-1}}`, &appsv1.Deployment{}, "spec.replicas: cannot unmarshal 15e-1 into int32"},
		{"int32 overflow", `{"spec":{"replicas":2147483648}}`, &appsv1.Deployment{}, "spec.replicas: cannot unmarshal 2147483648 into int32: out of range"},
		{"int64 overflow", `{"metadata":{"generation":9223372036854775808}}`, &corev1.Pod{}, "metadata.generation: cannot unmarshal 9223372036854775808 into int64: out of range"},
		{"huge exponent", `{"metadata":{"generation":1e999999999999}}`, &corev1.Pod{}, "metadata.generation: cannot unmarshal 1e999999999999 into int64: out of range"},
		{"int64 string not a number", `{"metadata":{"generation":"12abc"}}`, &corev1.Pod{}, `metadata.generation: cannot unmarshal string "12abc" into int64`},
		{"int32 string", `{"spec":{"replicas":"3"}}`, &appsv1.Deployment{}, `spec.replicas: cannot unmarshal string "3" into int32`},
		{"string into object", `{"spec":"big"}`, &appsv1.Deployment{}, `spec: cannot unmarshal string "big" into object`},
		{"number into string", `{"metadata":{"name":5}}`, &corev1.Pod{}, "metadata.name: cannot unmarshal 5 into string"},
		{"object into list", `{"spec":{"containers":{"name":"a"}}}`, &corev1.Pod{}, "spec.containers: cannot unmarshal object into array"},
		{"path through lists", `{"spec":{"template":{"spec":{"containers":[{"name":"a"},{"ports":[{"containerPort":"80"}]}]}}}}`, &appsv1.Deployment{}, `spec.template.spec.containers[1].ports[0].containerPort: cannot unmarshal string "80" into int32`},
		{"label value number", `{"metadata":{"labels":{"app":"web","version":1}}}`, &corev1.Pod{}, "metadata.labels[version]: cannot unmarshal 1 into string"},
		{"label value bool", `{"metadata":{"labels":{"enabled":true}}}`, &corev1.Pod{}, "metadata.labels[enabled]: cannot unmarshal bool into string"},
		{"bool into bool field wrong type", `{"spec":{"hostNetwork":"yes"}}`, &corev1.Pod{}, `spec.hostNetwork: cannot unmarshal string "yes" into bool`},
		{"IntOrString object", `{"spec":{"ports":[{"targetPort":{"intVal":80}}]}}`, &corev1.Service{}, "spec.ports[0].targetPort: cannot unmarshal object into int or string"},
		{"IntOrString fraction", `{"spec":{"ports":[{"targetPort":80.5}]}}`, &corev1.Service{}, "spec.ports[0].targetPort: cannot unmarshal 80.5 into int or string"},
		{"top-level array", `[{"kind":"Pod"}]`, &corev1.Pod{}, "cannot unmarshal array into Pod: expected a JSON object"},
		{"top-level string", `"Pod"`, &corev1.Pod{}, "cannot unmarshal string into Pod: expected a JSON object"},
		{"top-level null", `null`, &corev1.Pod{}, "cannot unmarshal null into Pod: expected a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Unmarshal([]byte(tt.in), tt.into)
			if err == nil {
				t.Fatalf("Unmarshal(%s) succeeded, want error %q", tt.in, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Unmarshal(%s) error:\n got %q\nwant %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestUnmarshalInvalidJSON(t *testing.T) {
	for _, in := range []string{``, `{`, `{"kind":}`, `{"kind":"Pod"} x`, `{'kind':1}`, `{"a":01}`} {
		err := Unmarshal([]byte(in), &corev1.Pod{})
		if err == nil || !strings.HasPrefix(err.Error(), "invalid JSON") {
			t.Errorf("Unmarshal(%q) = %v, want an invalid JSON error", in, err)
		}
	}
	if err := Unmarshal([]byte(`{}`), (*corev1.Pod)(nil)); err == nil {
		t.Error("Unmarshal into a nil *Pod succeeded")
	}
}

func TestUnmarshalWithUnknown(t *testing.T) {
	in := `{
	  "apiVersion": "apps/v1", "kind": "Deployment", "extra": 1,
	  "metadata": {"name": "web", "managedFields": [{"manager": "kubectl"}]},
	  "spec": {
	    "replicas": 2,
	    "template": {
	      "spec": {
	        "imagePullSecrets": [{"name": "regcred"}],
	        "securityContext": {"runAsNonRoot": true},
	        "containers": [
	          {"name": "a", "image": "nginx"},
	          {"name": "b", "image": "busybox", "securityContext": {"privileged": false}, "stdin": true}
	        ]
	      }
	    }
	  },
	  "status": {"foo": {"bar": 1}}
	}`
	d := &appsv1.Deployment{}
	unknown, err := UnmarshalWithUnknown([]byte(in), d)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"extra",
		"spec.template.spec.imagePullSecrets",
		"spec.template.spec.securityContext",
		"spec.template.spec.containers[1].securityContext",
		"spec.template.spec.containers[1].stdin",
		"status.foo",
	}
	if !slices.Equal(unknown, want) {
		t.Errorf("unknown fields:\n got %q\nwant %q", unknown, want)
	}
	if d.GetSpec().GetReplicas() != 2 || len(d.GetSpec().GetTemplate().GetSpec().GetContainers()) != 2 ||
		d.GetSpec().GetTemplate().GetSpec().GetContainers()[1].GetImage() != "busybox" {
		t.Errorf("known fields not decoded: %v", d)
	}
	if !proto.Equal(d.GetStatus(), &appsv1.DeploymentStatus{}) {
		t.Errorf("status = %v, want set and empty", d.GetStatus())
	}
}

func TestIntegerDigits(t *testing.T) {
	tests := []struct {
		in, want string
		neg      bool
		err      error
	}{
		{"0", "0", false, nil},
		{"-0", "0", false, nil},
		{"0.000e5", "0", false, nil},
		{"120", "120", false, nil},
		{"-7", "7", true, nil},
		{"1.25e2", "125", false, nil},
		{"1250e-1", "125", false, nil},
		{"1.0", "1", false, nil},
		{"1E+3", "1000", false, nil},
		{"1.5", "", false, errNotInteger},
		{"1e-1", "", false, errNotInteger},
		{"1e-99999999999999999999", "", false, errNotInteger},
		{"1e21", "", false, errRange},
		{"1e99999999999999999999", "", false, errRange},
	}
	for _, tt := range tests {
		neg, got, err := integerDigits(tt.in)
		if err != tt.err || got != tt.want || neg != tt.neg {
			t.Errorf("integerDigits(%q) = %v, %q, %v; want %v, %q, %v", tt.in, neg, got, err, tt.neg, tt.want, tt.err)
		}
	}
}
