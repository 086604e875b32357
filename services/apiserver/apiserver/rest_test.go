package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// restCall sends a JSON request to the REST gateway and decodes the JSON answer.
func restCall(t *testing.T, env *testenv.Env, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, env.HTTPURL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode, out
}

// dig reads a nested value: dig(m, "metadata", "name").
func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func podJSON(name string, labels map[string]string) string {
	lb, _ := json.Marshal(labels)
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"labels":%s},
		"spec":{"containers":[{"name":"web","image":"nginx:1.25","ports":[{"containerPort":80}],
		"resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]}}`, name, lb)
}

const podsPath = "/api/v1/namespaces/default/pods"

func TestRESTPodLifecycle(t *testing.T) {
	env := testenv.Start(t)

	code, pod := restCall(t, env, "POST", podsPath, podJSON("web-1", map[string]string{"app": "web"}))
	if code != http.StatusCreated {
		t.Fatalf("create: code %d, body %v", code, pod)
	}
	for _, f := range [][]string{{"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "creationTimestamp"}} {
		if s, _ := dig(pod, f...).(string); s == "" {
			t.Errorf("create: %v not set by the server: %v", f, pod)
		}
	}
	if g := dig(pod, "metadata", "generation"); g != float64(1) {
		t.Errorf("generation = %v (%T), want the JSON number 1", g, g)
	}
	if p := dig(pod, "status", "phase"); p != "Pending" {
		t.Errorf("status.phase = %v, want Pending", p)
	}
	if p := dig(pod, "spec", "restartPolicy"); p != "Always" {
		t.Errorf("spec.restartPolicy default = %v, want Always", p)
	}
	rv := dig(pod, "metadata", "resourceVersion").(string)

	code, got := restCall(t, env, "GET", podsPath+"/web-1", "")
	if code != 200 || dig(got, "metadata", "uid") != dig(pod, "metadata", "uid") {
		t.Fatalf("get: code %d, body %v", code, got)
	}

	code, st := restCall(t, env, "POST", podsPath, podJSON("web-1", nil))
	if code != http.StatusConflict || st["reason"] != "AlreadyExists" || st["kind"] != "Status" {
		t.Errorf("duplicate create: code %d, body %v; want 409 AlreadyExists Status", code, st)
	}

	// Update the image with the current resourceVersion: accepted, generation bumps.
	upd := strings.Replace(podJSON("web-1", map[string]string{"app": "web"}), "nginx:1.25", "nginx:1.26", 1)
	upd = strings.Replace(upd, `"name":"web-1"`, fmt.Sprintf(`"name":"web-1","resourceVersion":%q`, rv), 1)
	code, updated := restCall(t, env, "PUT", podsPath+"/web-1", upd)
	if code != 200 {
		t.Fatalf("update: code %d, body %v", code, updated)
	}
	if g := dig(updated, "metadata", "generation"); g != float64(2) {
		t.Errorf("generation after spec change = %v, want 2", g)
	}
	if dig(updated, "metadata", "resourceVersion") == rv {
		t.Errorf("resourceVersion did not change on update")
	}

	// The same body again carries the now stale resourceVersion: 409 Conflict.
	code, st = restCall(t, env, "PUT", podsPath+"/web-1", upd)
	if code != http.StatusConflict || st["reason"] != "Conflict" {
		t.Errorf("stale update: code %d, body %v; want 409 Conflict", code, st)
	}

	code, _ = restCall(t, env, "DELETE", podsPath+"/web-1", "")
	if code != 200 {
		t.Fatalf("delete: code %d", code)
	}
	code, st = restCall(t, env, "GET", podsPath+"/web-1", "")
	if code != http.StatusNotFound || st["reason"] != "NotFound" {
		t.Errorf("get after delete: code %d, body %v; want 404 NotFound", code, st)
	}
}

func TestRESTInvalidRefusedAndNothingStored(t *testing.T) {
	env := testenv.Start(t)
	cases := []struct {
		name, body, field string
	}{
		{"bad name", podJSON("Bad_Name", nil), "metadata.name"},
		{"no image", `{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c"}]}}`, "spec.containers[0].image"},
		{"bad label", podJSON("ok", map[string]string{"bad key!": "x"}), "metadata.labels"},
		{"bad port", strings.Replace(podJSON("ok2", nil), `"containerPort":80`, `"containerPort":70000`, 1),
			"spec.containers[0].ports[0].containerPort"},
		{"bad quantity", strings.Replace(podJSON("ok3", nil), `"100m"`, `"lots"`, 1), "spec.containers[0].resources.requests[cpu]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, st := restCall(t, env, "POST", podsPath, tc.body)
			if code != http.StatusUnprocessableEntity || st["kind"] != "Status" || st["reason"] != "Invalid" {
				t.Fatalf("code %d body %v; want 422 Invalid Status", code, st)
			}
			causes, _ := dig(st, "details", "causes").([]any)
			found := false
			for _, c := range causes {
				if f, _ := c.(map[string]any)["field"].(string); strings.HasPrefix(f, tc.field) {
					found = true
				}
			}
			if !found {
				t.Errorf("no cause names field %s: %v", tc.field, causes)
			}
		})
	}
	code, list := restCall(t, env, "GET", podsPath, "")
	if code != 200 || len(asSlice(list["items"])) != 0 {
		t.Errorf("refused creates stored something: %v", list)
	}

	// Malformed JSON is a 400 Status, not a crash.
	code, st := restCall(t, env, "POST", podsPath, `{"metadata": [}`)
	if code != http.StatusBadRequest || st["kind"] != "Status" {
		t.Errorf("malformed body: code %d body %v; want 400 Status", code, st)
	}
	// A namespace that does not exist.
	code, st = restCall(t, env, "POST", "/api/v1/namespaces/nope/pods", podJSON("a", nil))
	if code != http.StatusNotFound || !strings.Contains(fmt.Sprint(st["message"]), "nope") {
		t.Errorf("create in missing namespace: code %d body %v; want 404 naming it", code, st)
	}
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func TestRESTListSelectorsAndPages(t *testing.T) {
	env := testenv.Start(t)
	for i := 0; i < 7; i++ {
		app := "web"
		if i%2 == 1 {
			app = "db"
		}
		if code, b := restCall(t, env, "POST", podsPath, podJSON(fmt.Sprintf("p-%d", i), map[string]string{"app": app})); code != 201 {
			t.Fatalf("create: %d %v", code, b)
		}
	}
	code, l := restCall(t, env, "GET", podsPath+"?labelSelector=app%3Dweb", "")
	if code != 200 || len(asSlice(l["items"])) != 4 {
		t.Fatalf("labelSelector app=web: code %d, %d items; want 4", code, len(asSlice(l["items"])))
	}
	code, l = restCall(t, env, "GET", podsPath+"?labelSelector=app+in+(db),app!=web", "")
	if code != 200 || len(asSlice(l["items"])) != 3 {
		t.Fatalf("set-based selector: code %d, %d items; want 3", code, len(asSlice(l["items"])))
	}
	if l["kind"] != "PodList" || l["apiVersion"] != "v1" {
		t.Errorf("list kind/apiVersion = %v/%v", l["kind"], l["apiVersion"])
	}

	// Pages of 3 with continue tokens: every pod once, all pages at one resourceVersion.
	seen := map[string]bool{}
	path := podsPath + "?limit=3"
	pages, listRV := 0, ""
	for {
		code, l = restCall(t, env, "GET", path, "")
		if code != 200 {
			t.Fatalf("page: code %d %v", code, l)
		}
		pages++
		for _, it := range asSlice(l["items"]) {
			name := dig(it.(map[string]any), "metadata", "name").(string)
			if seen[name] {
				t.Errorf("pod %s on two pages", name)
			}
			seen[name] = true
		}
		rv := dig(l, "metadata", "resourceVersion").(string)
		if listRV == "" {
			listRV = rv
			// A write between pages must not show up: the list is one snapshot. The late pod
			// sorts after the first page's last key (p-2), among the pods of later pages, so
			// a page read at a newer revision would show it.
			if code, b := restCall(t, env, "POST", podsPath, podJSON("p-5-late", nil)); code != 201 {
				t.Fatalf("late create: %d %v", code, b)
			}
		} else if rv != listRV {
			t.Errorf("page resourceVersion %s differs from first page's %s", rv, listRV)
		}
		cont, _ := dig(l, "metadata", "continue").(string)
		if cont == "" {
			break
		}
		path = podsPath + "?limit=3&continue=" + cont
	}
	if len(seen) != 7 || pages != 3 || seen["p-5-late"] {
		t.Errorf("paged list saw %d pods in %d pages (late=%v); want 7 in 3 without the late one", len(seen), pages, seen["p-5-late"])
	}

	code, st := restCall(t, env, "GET", podsPath+"?labelSelector=app%3D%3D%3D", "")
	if code != http.StatusBadRequest || st["kind"] != "Status" {
		t.Errorf("bad selector: code %d %v; want 400 Status", code, st)
	}
	// Only the kind's selectable fields may be named (Kubernetes' field labels), even when the
	// path names a real scalar: watch filters and the bus depend on that fixed set.
	for _, sel := range []string{"spec.nope%3Dx", "spec.priority%3D1", "spec.containers%3Dx"} {
		code, st = restCall(t, env, "GET", podsPath+"?fieldSelector="+sel, "")
		if code != http.StatusBadRequest {
			t.Errorf("unsupported field selector %s: code %d %v; want 400", sel, code, st)
		}
	}
	code, st = restCall(t, env, "GET", podsPath+"?fieldSelector=status.phase%3DPending,spec.nodeName%3D", "")
	if code != http.StatusOK || len(st["items"].([]any)) != 8 {
		t.Errorf("selectable fields: code %d, %d items; want 200 with all 8 pending, unbound pods", code, len(st["items"].([]any)))
	}
}

func TestContinueTokenOlderThanCompactionIsGone(t *testing.T) {
	env := testenv.Start(t)
	for i := 0; i < 3; i++ {
		restCall(t, env, "POST", podsPath, podJSON(fmt.Sprintf("p-%d", i), nil))
	}
	_, l := restCall(t, env, "GET", podsPath+"?limit=1", "")
	cont := dig(l, "metadata", "continue").(string)
	restCall(t, env, "POST", podsPath, podJSON("after", nil))
	resp, err := env.Etcd.Get(context.Background(), "anything")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Etcd.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	code, st := restCall(t, env, "GET", podsPath+"?limit=1&continue="+cont, "")
	if code != http.StatusGone || st["kind"] != "Status" {
		t.Errorf("compacted continue: code %d %v; want 410 Status", code, st)
	}
}

func TestRESTDeploymentOnAppsPath(t *testing.T) {
	env := testenv.Start(t)
	const path = "/apis/apps/v1/namespaces/default/deployments"
	dep := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
	  "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
	  "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}`
	code, d := restCall(t, env, "POST", path, dep)
	if code != 201 {
		t.Fatalf("create deployment: %d %v", code, d)
	}
	if s := dig(d, "spec", "strategy", "rollingUpdate", "maxSurge"); s != "25%" {
		t.Errorf("default maxSurge = %v, want 25%%", s)
	}
	code, l := restCall(t, env, "GET", "/apis/apps/v1/deployments", "")
	if code != 200 || len(asSlice(l["items"])) != 1 || l["kind"] != "DeploymentList" {
		t.Errorf("all-namespace list: %d %v", code, l)
	}
	// replicas 0 is kept and shown (an optional field), and bumps the generation.
	upd := strings.Replace(dep, `"replicas":2`, `"replicas":0`, 1)
	code, d = restCall(t, env, "PUT", path+"/web", upd)
	if code != 200 || dig(d, "spec", "replicas") != float64(0) || dig(d, "metadata", "generation") != float64(2) {
		t.Errorf("scale to 0: %d replicas=%v generation=%v", code, dig(d, "spec", "replicas"), dig(d, "metadata", "generation"))
	}
	// A selector change is refused on apps/v1.
	bad := strings.ReplaceAll(dep, `"app":"web"`, `"app":"other"`)
	code, st := restCall(t, env, "PUT", path+"/web", bad)
	if code != http.StatusUnprocessableEntity {
		t.Errorf("selector change: %d %v; want 422", code, st)
	}
	code, _ = restCall(t, env, "DELETE", path+"/web", "")
	if code != 200 {
		t.Errorf("delete deployment: %d", code)
	}
}

func TestGRPCErrorsCarryStatus(t *testing.T) {
	env := testenv.Start(t)
	_, err := env.Client.Create(context.Background(), &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "Bad_Name", Namespace: "default"},
		Spec:     &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}},
	})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC code = %v, want InvalidArgument (err %v)", status.Code(err), err)
	}
	se := apierrors.FromError(err)
	if se.Status.GetCode() != 422 || len(se.Status.GetDetails().GetCauses()) == 0 ||
		se.Status.Details.Causes[0].Field != "metadata.name" {
		t.Errorf("status detail = %v; want 422 with cause on metadata.name", se.Status)
	}
}

func TestHealthMetricsOpenAPI(t *testing.T) {
	env := testenv.Start(t)
	restCall(t, env, "GET", podsPath, "")
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/openapi/v2"} {
		resp, err := http.Get(env.HTTPURL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		switch p {
		case "/metrics":
			if !bytes.Contains(body, []byte(`skiff_apiserver_requests_total{code="200",resource="pods",subresource="",verb="list"}`)) ||
				!bytes.Contains(body, []byte("skiff_apiserver_request_duration_seconds_bucket")) ||
				!bytes.Contains(body, []byte("skiff_bus_published_revision")) {
				t.Errorf("metrics lack request series:\n%.2000s", body)
			}
		case "/openapi/v2":
			if !bytes.Contains(body, []byte(`"/api/v1/namespaces/{namespace}/pods"`)) {
				t.Errorf("openapi lacks the pods path")
			}
		}
	}
	code, st := restCall(t, env, "GET", "/api/v1/nothing-here", "")
	if code != http.StatusNotFound || st["kind"] != "Status" {
		t.Errorf("unknown path: %d %v; want 404 Status", code, st)
	}
}
