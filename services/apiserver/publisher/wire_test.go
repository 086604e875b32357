package publisher

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

func mustSelection(t testing.TB, k *scheme.Kind) *selection {
	t.Helper()
	s, err := newSelection(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSelectionNodeReadsTheWire(t *testing.T) {
	pods, _ := scheme.Default().ForName("pods")
	sel := mustSelection(t, pods)
	cases := []*corev1.Pod{
		{},
		{Metadata: &metav1.ObjectMeta{Name: "unbound", Labels: map[string]string{"a": "b"}}},
		{Spec: &corev1.PodSpec{NodeName: "node-1", Containers: []*corev1.Container{{Name: "c", Image: "i"}}}},
		{Metadata: &metav1.ObjectMeta{Name: "p"}, Spec: &corev1.PodSpec{NodeName: "n.example.com", Hostname: "h"},
			Status: &corev1.PodStatus{Phase: "Running", HostIp: "10.0.0.1"}},
	}
	for _, pod := range cases {
		b, err := proto.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := sel.node(b), pod.GetSpec().GetNodeName(); got != want {
			t.Errorf("node = %q, want %q (pod %v)", got, want, pod)
		}
	}
	// A message field that occurs twice is merged: the later nodeName wins.
	first, _ := proto.Marshal(&corev1.Pod{Spec: &corev1.PodSpec{NodeName: "a", Hostname: "h"}})
	second, _ := proto.Marshal(&corev1.Pod{Spec: &corev1.PodSpec{NodeName: "b"}})
	if got := sel.node(append(first, second...)); got != "b" {
		t.Errorf("node of a merged encoding = %q, want b", got)
	}
	if got := sel.node([]byte{0xff, 0xff}); got != "" {
		t.Errorf("node of garbage = %q, want empty", got)
	}
}

// selectionOf is what selectors see of an object, by decoding it: the reference that the
// wire reading must agree with.
func selectionOf(t testing.TB, k *scheme.Kind, b []byte) (map[string]string, map[string]string) {
	t.Helper()
	obj := k.New()
	if err := proto.Unmarshal(b, obj); err != nil {
		t.Fatal(err)
	}
	return scheme.Meta(obj).GetLabels(), k.SelectableFieldSet(obj)
}

// setPath sets the scalar at a JSON field path to a value that depends on variant.
func setPath(t testing.TB, m protoreflect.Message, path string, variant int) {
	t.Helper()
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		m = m.Mutable(m.Descriptor().Fields().ByJSONName(p)).Message()
	}
	fd := m.Descriptor().Fields().ByJSONName(parts[len(parts)-1])
	var v protoreflect.Value
	switch fd.Kind() {
	case protoreflect.StringKind:
		v = protoreflect.ValueOfString(fmt.Sprintf("v%d", variant))
	case protoreflect.BoolKind:
		v = protoreflect.ValueOfBool(variant%2 == 1)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		v = protoreflect.ValueOfInt32(int32(variant))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		v = protoreflect.ValueOfInt64(int64(variant))
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		v = protoreflect.ValueOfEnum(vals.Get(variant % vals.Len()).Number())
	default:
		t.Fatalf("%s: kind %s not handled by the test", path, fd.Kind())
	}
	m.Set(fd, v)
}

// TestSelectionChangedAgreesWithDecoding checks, for every kind and every selectable field,
// that reading the wire says "changed" exactly when decoding both values does.
func TestSelectionChangedAgreesWithDecoding(t *testing.T) {
	for _, k := range scheme.Default().Kinds() {
		sel := mustSelection(t, k)
		base := func() scheme.Object {
			obj := k.New()
			scheme.Meta(obj).Name, scheme.Meta(obj).Namespace = "x", "ns"
			scheme.Meta(obj).Labels = map[string]string{"app": "web", "tier": "front", "zone": "a"}
			scheme.Meta(obj).Annotations = map[string]string{"note": "1"}
			for _, f := range k.SelectableFields {
				if !strings.HasPrefix(f, "metadata.") {
					setPath(t, obj.ProtoReflect(), f, 1)
				}
			}
			return obj
		}
		type variant struct {
			name   string
			change func(scheme.Object)
		}
		variants := []variant{
			{"nothing", func(scheme.Object) {}},
			{"annotation", func(o scheme.Object) { scheme.Meta(o).Annotations["note"] = "2" }},
			{"label value", func(o scheme.Object) { scheme.Meta(o).Labels["tier"] = "back" }},
			{"label added", func(o scheme.Object) { scheme.Meta(o).Labels["new"] = "" }},
			{"label removed", func(o scheme.Object) { delete(scheme.Meta(o).Labels, "zone") }},
			{"labels cleared", func(o scheme.Object) { scheme.Meta(o).Labels = nil }},
			{"label key renamed", func(o scheme.Object) {
				delete(scheme.Meta(o).Labels, "zone")
				scheme.Meta(o).Labels["zonf"] = "a"
			}},
		}
		for _, f := range k.SelectableFields {
			if strings.HasPrefix(f, "metadata.") {
				continue
			}
			variants = append(variants,
				variant{f + " changed", func(o scheme.Object) { setPath(t, o.ProtoReflect(), f, 2) }},
				variant{f + " cleared", func(o scheme.Object) { setPath(t, o.ProtoReflect(), f, 0) }})
		}
		for _, v := range variants {
			prevObj, curObj := base(), base()
			v.change(curObj)
			prev, _ := proto.Marshal(prevObj)
			// Encode the new value several times: map order differs between encodings.
			for range 5 {
				cur, _ := proto.Marshal(curObj)
				pl, pf := selectionOf(t, k, prev)
				cl, cf := selectionOf(t, k, cur)
				want := !maps.Equal(pl, cl) || !maps.Equal(pf, cf)
				if got := sel.changed(prev, cur); got != want {
					t.Errorf("%s, %s: changed = %v, decoding says %v", k.Kind, v.name, got, want)
				}
			}
		}
	}
}

// Encodings a careful decoder accepts must read the same: merged messages, repeated keys.
func TestSelectionChangedOnUnusualEncodings(t *testing.T) {
	pods, _ := scheme.Default().ForName("pods")
	sel := mustSelection(t, pods)
	enc := func(p *corev1.Pod) []byte { b, _ := proto.Marshal(p); return b }
	base := enc(&corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p", Labels: map[string]string{"a": "1"}},
		Spec: &corev1.PodSpec{NodeName: "n1"}})
	tests := []struct {
		name string
		cur  []byte
		want bool
	}{
		{"a later spec overrides nodeName", append(enc(&corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p", Labels: map[string]string{"a": "1"}},
			Spec: &corev1.PodSpec{NodeName: "n1"}}), enc(&corev1.Pod{Spec: &corev1.PodSpec{NodeName: "n2"}})...), true},
		{"a later metadata adds a label", append(base[:len(base):len(base)], enc(&corev1.Pod{Metadata: &metav1.ObjectMeta{Labels: map[string]string{"b": "2"}}})...), true},
		{"a later metadata repeats a label", append(base[:len(base):len(base)], enc(&corev1.Pod{Metadata: &metav1.ObjectMeta{Labels: map[string]string{"a": "1"}}})...), false},
		{"a later metadata overrides a label", append(base[:len(base):len(base)], enc(&corev1.Pod{Metadata: &metav1.ObjectMeta{Labels: map[string]string{"a": "2"}}})...), true},
		{"garbage", []byte{0xff, 0xff, 0xff}, true},
	}
	for _, tt := range tests {
		if got := sel.changed(base, tt.cur); got != tt.want {
			t.Errorf("%s: changed = %v, want %v", tt.name, got, tt.want)
		}
		if tt.name == "garbage" {
			continue
		}
		pl, pf := selectionOf(t, pods, base)
		cl, cf := selectionOf(t, pods, tt.cur)
		if want := !maps.Equal(pl, cl) || !maps.Equal(pf, cf); want != tt.want {
			t.Errorf("%s: the test's expectation %v disagrees with decoding (%v)", tt.name, tt.want, want)
		}
	}
}

// BenchmarkPrevCheck compares the publisher's wire reading with decoding both values, for the
// common MODIFIED change (an annotation, no selector-relevant change) of a realistic pod.
func BenchmarkPrevCheck(b *testing.B) {
	pods, _ := scheme.Default().ForName("pods")
	sel := mustSelection(b, pods)
	// testenv.RealisticPod, which this package's tests cannot import (testenv imports it).
	p := &corev1.Pod{
		ApiVersion: "v1", Kind: "Pod",
		Metadata: &metav1.ObjectMeta{Name: "web-0", Namespace: "ns",
			Labels:      map[string]string{"app": "bench", "tier": "web"},
			Annotations: map[string]string{"example.com/owner": "benchmarks", "example.com/note": "a realistic pod"}},
		Spec: &corev1.PodSpec{NodeName: "node-1", Containers: []*corev1.Container{{
			Name: "web", Image: "registry.local/web:1.2.3", Command: []string{"/web"}, Args: []string{"--port=8080", "--verbose"},
			Ports: []*corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Env:   []*corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "local"}},
			Resources: &corev1.ResourceRequirements{
				Requests: map[string]string{"cpu": "100m", "memory": "64Mi"},
				Limits:   map[string]string{"cpu": "500m", "memory": "128Mi"}},
			ReadinessProbe: &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/healthz",
				Port: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 8080}}}},
		}}, NodeSelector: map[string]string{"disk": "ssd"}},
		Status: &corev1.PodStatus{Phase: "Running", PodIp: "10.0.0.7", HostIp: "192.168.0.2"},
	}
	prev, _ := proto.Marshal(p)
	p.Metadata.Annotations["example.com/note"] = "changed"
	cur, _ := proto.Marshal(p)
	b.Run("wire", func(b *testing.B) {
		for b.Loop() {
			if sel.changed(prev, cur) {
				b.Fatal("changed")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			a, c := &corev1.Pod{}, &corev1.Pod{}
			if err := proto.Unmarshal(prev, a); err != nil {
				b.Fatal(err)
			}
			if err := proto.Unmarshal(cur, c); err != nil {
				b.Fatal(err)
			}
			if !maps.Equal(a.Metadata.Labels, c.Metadata.Labels) || !maps.Equal(pods.SelectableFieldSet(a), pods.SelectableFieldSet(c)) {
				b.Fatal("changed")
			}
		}
	})
}
