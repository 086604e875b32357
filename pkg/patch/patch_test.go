package patch

import (
	"encoding/json"
	"errors"
	"testing"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return m
}

func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var deployment = (&appsv1.Deployment{}).ProtoReflect().Descriptor()

// TestStrategicMerge checks Kubernetes' strategic merge patch semantics on the fields whose
// merge keys pkg/apis/schema declares.
func TestStrategicMerge(t *testing.T) {
	const base = `{"metadata":{"name":"web","labels":{"app":"web","tier":"a"},"finalizers":["a"]},
	  "spec":{"replicas":2,"template":{"spec":{
	    "containers":[{"name":"web","image":"nginx:1","command":["a","b"],
	      "env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
	      "ports":[{"containerPort":80,"name":"http"}],
	      "volumeMounts":[{"name":"data","mountPath":"/data"}]},
	     {"name":"side","image":"busybox"}],
	    "volumes":[{"name":"data","emptyDir":{}}]}}}}`
	for _, tt := range []struct{ name, patch, want string }{
		{"containers merge by name",
			`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}`,
			`{"metadata":{"finalizers":["a"],"labels":{"app":"web","tier":"a"},"name":"web"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"command":["a","b"],"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"image":"nginx:2","name":"web","ports":[{"containerPort":80,"name":"http"}],"volumeMounts":[{"mountPath":"/data","name":"data"}]},{"image":"busybox","name":"side"}],"volumes":[{"emptyDir":{},"name":"data"}]}}}}`},
		{"env by name, new item appended, atomic command replaced",
			`{"spec":{"template":{"spec":{"containers":[{"name":"web","command":["c"],"env":[{"name":"B","value":"3"},{"name":"C","value":"4"}]}]}}}}`,
			`{"metadata":{"finalizers":["a"],"labels":{"app":"web","tier":"a"},"name":"web"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"command":["c"],"env":[{"name":"A","value":"1"},{"name":"B","value":"3"},{"name":"C","value":"4"}],"image":"nginx:1","name":"web","ports":[{"containerPort":80,"name":"http"}],"volumeMounts":[{"mountPath":"/data","name":"data"}]},{"image":"busybox","name":"side"}],"volumes":[{"emptyDir":{},"name":"data"}]}}}}`},
		{"$patch delete removes an item by its key; null removes a field",
			`{"metadata":{"labels":{"tier":null}},"spec":{"replicas":null,"template":{"spec":{"containers":[{"name":"side","$patch":"delete"},{"name":"web","ports":[{"containerPort":80,"$patch":"delete"}]}]}}}}`,
			`{"metadata":{"finalizers":["a"],"labels":{"app":"web"},"name":"web"},"spec":{"template":{"spec":{"containers":[{"command":["a","b"],"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"image":"nginx:1","name":"web","ports":[],"volumeMounts":[{"mountPath":"/data","name":"data"}]}],"volumes":[{"emptyDir":{},"name":"data"}]}}}}`},
		{"finalizers merge as a set",
			`{"metadata":{"finalizers":["b","a"]}}`,
			`{"metadata":{"finalizers":["a","b"],"labels":{"app":"web","tier":"a"},"name":"web"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"command":["a","b"],"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"image":"nginx:1","name":"web","ports":[{"containerPort":80,"name":"http"}],"volumeMounts":[{"mountPath":"/data","name":"data"}]},{"image":"busybox","name":"side"}],"volumes":[{"emptyDir":{},"name":"data"}]}}}}`},
		{"$retainKeys on a volume replaces its source; $setElementOrder orders containers",
			`{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"side"},{"name":"web"}],"volumes":[{"name":"data","hostPath":{"path":"/x"},"$retainKeys":["hostPath","name"]}]}}}}`,
			`{"metadata":{"finalizers":["a"],"labels":{"app":"web","tier":"a"},"name":"web"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"image":"busybox","name":"side"},{"command":["a","b"],"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"image":"nginx:1","name":"web","ports":[{"containerPort":80,"name":"http"}],"volumeMounts":[{"mountPath":"/data","name":"data"}]}],"volumes":[{"hostPath":{"path":"/x"},"name":"data"}]}}}}`},
		{"$patch replace on a list replaces it",
			`{"spec":{"template":{"spec":{"containers":[{"name":"only","image":"x"},{"$patch":"replace"}]}}}}`,
			`{"metadata":{"finalizers":["a"],"labels":{"app":"web","tier":"a"},"name":"web"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"image":"x","name":"only"}],"volumes":[{"emptyDir":{},"name":"data"}]}}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := StrategicMerge(decode(t, base), decode(t, tt.patch), deployment)
			if err != nil {
				t.Fatal(err)
			}
			if c := canonical(t, got); c != tt.want {
				t.Errorf("got\n%s\nwant\n%s", c, tt.want)
			}
		})
	}
}

func TestStrategicMergeRefusesBadPatches(t *testing.T) {
	for _, p := range []string{
		`{"spec":{"template":{"spec":{"containers":[{"image":"no-name"}]}}}}`, // no merge key
		`{"spec":{"template":{"spec":{"containers":["web"]}}}}`,               // not an object
		`{"$patch":"sideways"}`,
	} {
		_, err := StrategicMerge(decode(t, `{"spec":{"template":{"spec":{"containers":[{"name":"web"}]}}}}`), decode(t, p), deployment)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("patch %s: err %v, want ErrInvalid", p, err)
		}
	}
}

// TestServicePortsMergeByPort: a Service's ports merge by port, a pod's by containerPort.
func TestServicePortsMergeByPort(t *testing.T) {
	svc := (&corev1.Service{}).ProtoReflect().Descriptor()
	got, err := StrategicMerge(decode(t, `{"spec":{"ports":[{"port":80,"targetPort":"http"},{"port":443}]}}`),
		decode(t, `{"spec":{"ports":[{"port":443,"targetPort":8443}]}}`), svc)
	if err != nil {
		t.Fatal(err)
	}
	if c, want := canonical(t, got), `{"spec":{"ports":[{"port":80,"targetPort":"http"},{"port":443,"targetPort":8443}]}}`; c != want {
		t.Errorf("got %s, want %s", c, want)
	}
}

func TestApplyJSON(t *testing.T) {
	doc := []byte(`{"a":{"b":1,"c":[1,2]}}`)
	out, err := ApplyJSON(JSONPatch, doc, []byte(`[{"op":"replace","path":"/a/b","value":2},{"op":"add","path":"/a/c/-","value":3}]`))
	if err != nil || string(out) != `{"a":{"b":2,"c":[1,2,3]}}` {
		t.Errorf("json patch: %s %v", out, err)
	}
	if _, err := ApplyJSON(JSONPatch, doc, []byte(`[{"op":"test","path":"/a/b","value":5}]`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("failed test op: %v", err)
	}
	out, err = ApplyJSON(MergePatch, doc, []byte(`{"a":{"b":null,"c":[9]}}`))
	if err != nil || string(out) != `{"a":{"c":[9]}}` {
		t.Errorf("merge patch: %s %v", out, err)
	}
	if _, err := ApplyJSON(MergePatch, doc, []byte(`[1]`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("merge patch of a list: %v", err)
	}
}

// TestThreeWay is client-side apply's merge: fields dropped from the configuration go,
// fields others set stay, lists merge by key.
func TestThreeWay(t *testing.T) {
	original := decode(t, `{"metadata":{"labels":{"app":"web","old":"x"}},"spec":{"replicas":2,"template":{"spec":{"containers":[
		{"name":"web","image":"nginx:1","env":[{"name":"A","value":"1"},{"name":"GONE","value":"x"}]},{"name":"side","image":"busybox"}]}}}}`)
	modified := decode(t, `{"metadata":{"labels":{"app":"web"}},"spec":{"template":{"spec":{"containers":[
		{"name":"web","image":"nginx:2","env":[{"name":"A","value":"1"}]}]}}}}`)
	current := decode(t, `{"metadata":{"labels":{"app":"web","old":"x","owner":"ops"},"uid":"u1"},"spec":{"replicas":5,"paused":true,"template":{"spec":{"containers":[
		{"name":"web","image":"nginx:1","imagePullPolicy":"Always","env":[{"name":"A","value":"1"},{"name":"GONE","value":"x"},{"name":"INJECTED","value":"y"}]},
		{"name":"side","image":"busybox"},{"name":"mesh","image":"proxy"}]}}}}`)
	got := canonical(t, ThreeWay(original, modified, current, deployment))
	want := `{"metadata":{"labels":{"app":"web","owner":"ops"},"uid":"u1"},"spec":{"paused":true,"template":{"spec":{"containers":[` +
		`{"env":[{"name":"A","value":"1"},{"name":"INJECTED","value":"y"}],"image":"nginx:2","imagePullPolicy":"Always","name":"web"},` +
		`{"image":"proxy","name":"mesh"}]}}}}`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
