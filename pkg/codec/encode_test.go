package codec

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestMarshalExact(t *testing.T) {
	tests := []struct {
		name string
		in   proto.Message
		want string
	}{
		{
			name: "int64 is a number",
			in:   &corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "a", Generation: 2}},
			want: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","generation":2}}`,
		},
		{
			name: "int64 above 2^53 stays exact",
			in:   &metav1.ObjectMeta{Generation: 9007199254740993},
			want: `{"generation":9007199254740993}`,
		},
		{
			name: "optional zero is written",
			in:   deploymentWithReplicas(0),
			want: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":0}}`,
		},
		{
			name: "unset optional is omitted, set empty message is written",
			in:   &appsv1.Deployment{Kind: "Deployment", Spec: &appsv1.DeploymentSpec{}, Status: &appsv1.DeploymentStatus{}},
			want: `{"kind":"Deployment","spec":{},"status":{}}`,
		},
		{
			name: "implicit zero scalars and empty lists and maps are omitted",
			in: &corev1.PodSpec{
				Containers: []*corev1.Container{}, NodeSelector: map[string]string{},
				HostNetwork: false, RestartPolicy: "",
			},
			want: `{}`,
		},
		{
			name: "empty element of a list is written",
			in:   &corev1.PodSpec{Containers: []*corev1.Container{{}, {Name: "b"}}},
			want: `{"containers":[{},{"name":"b"}]}`,
		},
		{
			name: "maps sorted by key",
			in:   &metav1.ObjectMeta{Labels: map[string]string{"b": "2", "a": "1", "c": ""}},
			want: `{"labels":{"a":"1","b":"2","c":""}}`,
		},
		{
			name: "json_name spellings",
			in: &corev1.PodStatus{HostIp: "1.1.1.1", PodIp: "10.0.0.1", PodIps: []*corev1.PodIP{{Ip: "10.0.0.1"}},
				ContainerStatuses: []*corev1.ContainerStatus{{ImageId: "i", ContainerId: "c", Started: proto.Bool(false)}}},
			want: `{"hostIP":"1.1.1.1","podIP":"10.0.0.1","podIPs":[{"ip":"10.0.0.1"}],"containerStatuses":[{"imageID":"i","containerID":"c","started":false}]}`,
		},
		{
			name: "service with numeric and named targetPort",
			in: &corev1.ServiceSpec{
				Ports: []*corev1.ServicePort{
					{Name: "http", Port: 80, TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 8080}}},
					{Name: "https", Port: 443, TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "https"}}},
					{Name: "zero", Port: 1, TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 0}}},
				},
				ClusterIp: "10.96.0.1",
			},
			want: `{"ports":[{"name":"http","port":80,"targetPort":8080},{"name":"https","port":443,"targetPort":"https"},{"name":"zero","port":1,"targetPort":0}],"clusterIP":"10.96.0.1"}`,
		},
		{
			name: "strings escaped as encoding/json does",
			in:   &metav1.ObjectMeta{Name: "a\"b\\c\n<&>\u2028\x01é"},
			want: `{"name":"a\"b\\c\n\u003c\u0026\u003e\u2028\u0001é"}`,
		},
		{
			name: "strategy with percentages",
			in: &appsv1.DeploymentStrategy{Type: "RollingUpdate", RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "25%"}},
				MaxSurge:       &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 1}},
			}},
			want: `{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"25%","maxSurge":1}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(mustMarshal(t, tt.in))
			if got != tt.want {
				t.Errorf("Marshal:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestMarshalNil(t *testing.T) {
	for _, m := range []proto.Message{nil, (*corev1.Pod)(nil)} {
		if got := string(mustMarshal(t, m)); got != "null" {
			t.Errorf("Marshal(%#v) = %s, want null", m, got)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", "<script>&amp;</script>", "\x00\x1f\x7f", "\b\f\n\r\t", "\u2028\u2029",
		"invalid \xff\xfe utf8", "truncated \xe2\x82", "emoji 😀", "\"quoted\" \\slash/",
		strings.Repeat("ab\"", 50),
	} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestMarshalIndent(t *testing.T) {
	got, err := MarshalIndent(&corev1.Pod{Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "a"}}, "  ")
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"kind\": \"Pod\",\n  \"metadata\": {\n    \"name\": \"a\"\n  }\n}"
	if string(got) != want {
		t.Errorf("MarshalIndent:\n got %s\nwant %s", got, want)
	}
}

// TestRoundTrip marshals and unmarshals realistic and fully populated objects of every kind.
func TestRoundTrip(t *testing.T) {
	service := &corev1.Service{
		ApiVersion: "v1", Kind: "Service",
		Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &corev1.ServiceSpec{
			Type:     "ClusterIP",
			Selector: map[string]string{"app": "web"},
			Ports: []*corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: "TCP", TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 8080}}},
				{Name: "metrics", Port: 9090, TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "metrics"}}},
			},
			ClusterIp:  "10.96.0.10",
			ClusterIps: []string{"10.96.0.10"},
		},
		Status: &corev1.ServiceStatus{LoadBalancer: &corev1.LoadBalancerStatus{}},
	}
	tests := []struct {
		name string
		in   proto.Message
	}{
		{"pod", examplePod()},
		{"deployment replicas 0", deploymentWithReplicas(0)},
		{"service", service},
		{"filled pod", filled(&corev1.Pod{})},
		{"filled deployment", filled(&appsv1.Deployment{})},
		{"filled service", filled(&corev1.Service{})},
		{"filled replicaset list", filled(&appsv1.ReplicaSetList{})},
		{"filled node", filled(&corev1.Node{})},
		{"filled namespace", filled(&corev1.Namespace{})},
		{"filled endpoints", filled(&corev1.Endpoints{})},
		{"filled event", filled(&corev1.Event{})},
		{"filled status", filled(&metav1.Status{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustMarshal(t, tt.in)
			if !json.Valid(b) {
				t.Fatalf("Marshal produced invalid JSON: %s", b)
			}
			got := tt.in.ProtoReflect().New().Interface()
			unknown, err := UnmarshalWithUnknown(b, got)
			if err != nil {
				t.Fatalf("Unmarshal: %v\n%s", err, b)
			}
			if len(unknown) > 0 {
				t.Errorf("Unmarshal reported unknown fields %v in Marshal output", unknown)
			}
			if !proto.Equal(got, tt.in) {
				t.Errorf("round trip differs:\n got %v\nwant %v", got, tt.in)
			}
			// Marshal is deterministic.
			if again := mustMarshal(t, got); string(again) != string(b) {
				t.Errorf("re-marshal differs:\n got %s\nwant %s", again, b)
			}
		})
	}
}

// TestCompatibleWithProtojson checks names and number formats against protojson, which
// reads JSON numbers for int64 and JSON names, for kinds without IntOrString (whose shape
// deliberately differs) and without managed fields (FieldsV1 is raw JSON, as in Kubernetes).
// Reading protojson's output checks the other direction, including int64 values written as
// strings.
func TestCompatibleWithProtojson(t *testing.T) {
	noManagedFields := func(m proto.Message) proto.Message {
		if md, ok := m.(*metav1.ObjectMeta); ok {
			md.ManagedFields = nil
		} else if obj, ok := m.(interface{ GetMetadata() *metav1.ObjectMeta }); ok {
			obj.GetMetadata().ManagedFields = nil
		}
		return m
	}
	for _, in := range []proto.Message{
		filled(&corev1.Node{}), filled(&corev1.Namespace{}), filled(&corev1.Endpoints{}),
		filled(&corev1.Event{}), filled(&metav1.ObjectMeta{}), filled(&metav1.Status{}),
	} {
		in = noManagedFields(in)
		name := string(in.ProtoReflect().Descriptor().FullName())
		ours := mustMarshal(t, in)
		got := in.ProtoReflect().New().Interface()
		if err := protojson.Unmarshal(ours, got); err != nil {
			t.Errorf("%s: protojson cannot read our output: %v", name, err)
		} else if !proto.Equal(got, in) {
			t.Errorf("%s: protojson read our output as\n%v\nwant %v", name, got, in)
		}
		theirs, err := protojson.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		got = in.ProtoReflect().New().Interface()
		if err := Unmarshal(theirs, got); err != nil {
			t.Errorf("%s: cannot read protojson output: %v", name, err)
		} else if !proto.Equal(got, in) {
			t.Errorf("%s: read protojson output as\n%v\nwant %v", name, got, in)
		}
	}
}
