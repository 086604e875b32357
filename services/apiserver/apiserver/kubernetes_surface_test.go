package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
)

// httpDo sends a request with headers and returns the status, the Content-Type and the body.
func httpDo(t *testing.T, method, url, contentType, accept, body string) (int, string, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), data
}

func jsonOf(t *testing.T, data []byte) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, data)
	}
	return m
}

func TestDiscovery(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	code, _, body := httpDo(t, "GET", env.HTTPURL+"/api/v1", "", "", "")
	if code != 200 {
		t.Fatalf("/api/v1: %d %s", code, body)
	}
	var list struct {
		GroupVersion string `json:"groupVersion"`
		Resources    []struct {
			Name       string   `json:"name"`
			Kind       string   `json:"kind"`
			Group      string   `json:"group"`
			Verbs      []string `json:"verbs"`
			ShortNames []string `json:"shortNames"`
			Categories []string `json:"categories"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, r := range list.Resources {
		found[r.Name] = r.Kind + " " + strings.Join(r.ShortNames, ",") + " " + strings.Join(r.Categories, ",") + " " + strings.Join(r.Verbs, ",")
	}
	for name, want := range map[string]string{
		"pods":         "Pod po all create,delete,get,list,patch,update,watch",
		"pods/status":  "Pod   get,patch,update",
		"pods/binding": "Binding   create",
		"services":     "Service svc all create,delete,get,list,patch,update,watch",
		"namespaces":   "Namespace ns  create,delete,get,list,patch,update,watch",
	} {
		if found[name] != want {
			t.Errorf("/api/v1 %s: %q, want %q", name, found[name], want)
		}
	}
	code, _, body = httpDo(t, "GET", env.HTTPURL+"/apis/apps/v1", "", "", "")
	if code != 200 || !strings.Contains(string(body), `{"name":"deployments/scale","singularName":"","namespaced":true,"group":"autoscaling","version":"v1","kind":"Scale","verbs":["get","patch","update"]}`) {
		t.Errorf("/apis/apps/v1: %d %s", code, body)
	}
	code, _, body = httpDo(t, "GET", env.HTTPURL+"/apis", "", "", "")
	if code != 200 || !strings.Contains(string(body), `"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}`) {
		t.Errorf("/apis: %d %s", code, body)
	}
	// The aggregated form kubectl asks for first.
	accept := "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
	code, ct, body := httpDo(t, "GET", env.HTTPURL+"/apis", "", accept, "")
	if code != 200 || ct != "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList" {
		t.Fatalf("aggregated /apis: %d %q", code, ct)
	}
	if s := string(body); !strings.Contains(s, `"kind":"APIGroupDiscoveryList"`) ||
		!strings.Contains(s, `{"subresource":"scale","responseKind":{"group":"autoscaling","version":"v1","kind":"Scale"},"verbs":["get","patch","update"]}`) {
		t.Errorf("aggregated /apis: %s", s)
	}
	code, ct, body = httpDo(t, "GET", env.HTTPURL+"/api", "", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList", "")
	if code != 200 || !strings.HasSuffix(ct, "v=v2beta1;as=APIGroupDiscoveryList") || !strings.Contains(string(body), `"resource":"pods"`) {
		t.Errorf("aggregated /api (v2beta1): %d %q %s", code, ct, body)
	}
	if code, _, body := httpDo(t, "GET", env.HTTPURL+"/version", "", "", ""); code != 200 || jsonOf(t, body)["minor"] != "32" {
		t.Errorf("/version: %d %s", code, body)
	}
}

func TestOpenAPI(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	code, ct, body := httpDo(t, "GET", env.HTTPURL+"/openapi/v2", "", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf", "")
	if code != 200 || ct != "application/com.github.proto-openapi.spec.v2@v1.0+protobuf" {
		t.Fatalf("/openapi/v2 protobuf: %d %q", code, ct)
	}
	var doc openapiv2.Document
	if err := proto.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/openapi/v2 protobuf does not decode: %v", err)
	}
	defs := map[string]*openapiv2.Schema{}
	for _, d := range doc.GetDefinitions().GetAdditionalProperties() {
		defs[d.GetName()] = d.GetValue()
	}
	for _, name := range []string{"io.k8s.api.core.v1.Pod", "io.k8s.api.apps.v1.Deployment",
		"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
		"io.k8s.apimachinery.pkg.api.resource.Quantity"} {
		if defs[name] == nil {
			t.Errorf("/openapi/v2 lacks definition %s", name)
		}
	}
	if f := defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"].GetFormat(); f != "int-or-string" {
		t.Errorf("IntOrString format %q", f)
	}

	code, _, body = httpDo(t, "GET", env.HTTPURL+"/openapi/v3", "", "", "")
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &index); code != 200 || err != nil || index.Paths["apis/apps/v1"].ServerRelativeURL == "" {
		t.Fatalf("/openapi/v3: %d %v %s", code, err, body)
	}
	code, _, body = httpDo(t, "GET", env.HTTPURL+index.Paths["apis/apps/v1"].ServerRelativeURL, "", "", "")
	if code != 200 {
		t.Fatalf("v3 apps/v1: %d", code)
	}
	var v3 struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &v3); err != nil {
		t.Fatal(err)
	}
	patch := string(v3.Paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"])
	for _, want := range []string{`"x-kubernetes-group-version-kind":{"group":"apps","kind":"Deployment","version":"v1"}`,
		`"name":"fieldValidation"`, `"name":"force"`, `"application/apply-patch+yaml"`} {
		if !strings.Contains(patch, want) {
			t.Errorf("PATCH deployment lacks %s: %s", want, patch)
		}
	}
	podSpec, _ := json.Marshal(v3.Components.Schemas["io.k8s.api.core.v1.PodSpec"])
	if !strings.Contains(string(podSpec), `"containers":{"description":"List of containers belonging to the pod.`) ||
		!strings.Contains(string(podSpec), `"x-kubernetes-list-map-keys":["name"],"x-kubernetes-list-type":"map","x-kubernetes-patch-merge-key":"name","x-kubernetes-patch-strategy":"merge"`) {
		t.Errorf("PodSpec.containers: %s", podSpec)
	}
}

const deployJSON = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},
 "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
 "spec":{"containers":[{"name":"web","image":"nginx:1","env":[{"name":"A","value":"1"}]}]}}}}`

func TestPatchScaleAndApply(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	base := env.HTTPURL + "/apis/apps/v1/namespaces/default/deployments"
	// Server-side apply creates (201) and records its manager.
	code, _, body := httpDo(t, "PATCH", base+"/web?fieldManager=ci", "application/apply-patch+yaml", "", deployJSON)
	if code != http.StatusCreated {
		t.Fatalf("apply create: %d %s", code, body)
	}
	if mf := dig(jsonOf(t, body), "metadata", "managedFields").([]any); len(mf) != 1 || dig(mf[0].(map[string]any), "manager") != "ci" ||
		dig(mf[0].(map[string]any), "operation") != "Apply" {
		t.Errorf("managedFields after apply: %v", mf)
	}
	// Apply needs a manager.
	if code, _, body := httpDo(t, "PATCH", base+"/web", "application/apply-patch+yaml", "", deployJSON); code != 422 ||
		!strings.Contains(string(body), "fieldManager: Required value") {
		t.Errorf("apply without fieldManager: %d %s", code, body)
	}
	// The scale subresource: GET, PATCH (kubectl scale) and PUT.
	code, _, body = httpDo(t, "GET", base+"/web/scale", "", "", "")
	if code != 200 || dig(jsonOf(t, body), "spec", "replicas") != 2.0 || dig(jsonOf(t, body), "kind") != "Scale" ||
		dig(jsonOf(t, body), "status", "selector") != "app=web" {
		t.Errorf("GET scale: %d %s", code, body)
	}
	code, _, body = httpDo(t, "PATCH", base+"/web/scale?fieldManager=hpa", "application/merge-patch+json", "", `{"spec":{"replicas":5}}`)
	if code != 200 || dig(jsonOf(t, body), "spec", "replicas") != 5.0 || dig(jsonOf(t, body), "apiVersion") != "autoscaling/v1" {
		t.Errorf("PATCH scale: %d %s", code, body)
	}
	code, _, body = httpDo(t, "PUT", base+"/web/scale", "application/json", "", `{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web","resourceVersion":"1"},"spec":{"replicas":3}}`)
	if code != http.StatusConflict {
		t.Errorf("PUT scale at a stale resourceVersion: %d %s", code, body)
	}
	// Applying replicas: 2 again conflicts with the scaler: 409 with one cause per field.
	code, _, body = httpDo(t, "PATCH", base+"/web?fieldManager=ci", "application/apply-patch+yaml", "", deployJSON)
	st := jsonOf(t, body)
	causes, _ := dig(st, "details", "causes").([]any)
	if code != http.StatusConflict || dig(st, "reason") != "Conflict" || len(causes) != 1 ||
		dig(causes[0].(map[string]any), "field") != ".spec.replicas" ||
		dig(causes[0].(map[string]any), "reason") != "FieldManagerConflict" ||
		dig(st, "message") != `Apply failed with 1 conflict: conflict with "hpa" using apps/v1: .spec.replicas` {
		t.Errorf("apply conflict: %d %s", code, body)
	}
	// Forced, it wins.
	code, _, body = httpDo(t, "PATCH", base+"/web?fieldManager=ci&force=true", "application/apply-patch+yaml", "", deployJSON)
	if code != 200 || dig(jsonOf(t, body), "spec", "replicas") != 2.0 {
		t.Errorf("forced apply: %d %s", code, body)
	}
	// Strategic merge keeps env A and adds B; JSON patch tests and replaces; merge patch.
	code, _, body = httpDo(t, "PATCH", base+"/web", "application/strategic-merge-patch+json", "",
		`{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}`)
	if env := dig(jsonOf(t, body), "spec", "template", "spec"); code != 200 || !strings.Contains(mustMarshal(env), `"env":[{"name":"A","value":"1"},{"name":"B","value":"2"}]`) {
		t.Errorf("strategic merge: %d %s", code, body)
	}
	code, _, body = httpDo(t, "PATCH", base+"/web", "application/json-patch+json", "",
		`[{"op":"test","path":"/spec/replicas","value":9}]`)
	if code != 422 {
		t.Errorf("failed JSON patch test: %d %s", code, body)
	}
	code, _, body = httpDo(t, "PATCH", base+"/web?dryRun=All", "application/merge-patch+json", "", `{"spec":{"replicas":8}}`)
	if code != 200 || dig(jsonOf(t, body), "spec", "replicas") != 8.0 {
		t.Errorf("dry-run patch: %d %s", code, body)
	}
	if _, _, body := httpDo(t, "GET", base+"/web", "", "", ""); dig(jsonOf(t, body), "spec", "replicas") != 2.0 {
		t.Errorf("a dry-run patch changed the object: %s", body)
	}
	// Status: a patch of /status changes only status.
	code, _, body = httpDo(t, "PATCH", base+"/web/status", "application/merge-patch+json", "",
		`{"spec":{"replicas":0},"status":{"replicas":2,"readyReplicas":1}}`)
	if code != 200 || dig(jsonOf(t, body), "status", "readyReplicas") != 1.0 || dig(jsonOf(t, body), "spec", "replicas") != 2.0 {
		t.Errorf("status patch: %d %s", code, body)
	}
	// Unknown patch types are 415; a patch of a missing object is 404.
	if code, _, _ := httpDo(t, "PATCH", base+"/web", "application/xml", "", `<x/>`); code != http.StatusUnsupportedMediaType {
		t.Errorf("xml patch: %d", code)
	}
	if code, _, _ := httpDo(t, "PATCH", base+"/nope", "application/merge-patch+json", "", `{}`); code != 404 {
		t.Errorf("patch of a missing object: %d", code)
	}
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestTables(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	if code, _, body := httpDo(t, "POST", env.HTTPURL+"/apis/apps/v1/namespaces/default/deployments", "application/json", "", deployJSON); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	accept := "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
	for _, tt := range []struct {
		query, object string
	}{{"", "PartialObjectMetadata"}, {"?includeObject=Object", "Deployment"}, {"?includeObject=None", ""}} {
		code, _, body := httpDo(t, "GET", env.HTTPURL+"/apis/apps/v1/namespaces/default/deployments"+tt.query, "", accept, "")
		var tab struct {
			Kind    string `json:"kind"`
			Columns []struct {
				Name     string `json:"name"`
				Priority int    `json:"priority"`
			} `json:"columnDefinitions"`
			Rows []struct {
				Cells  []any          `json:"cells"`
				Object map[string]any `json:"object"`
			} `json:"rows"`
		}
		if err := json.Unmarshal(body, &tab); code != 200 || err != nil || tab.Kind != "Table" || len(tab.Rows) != 1 {
			t.Fatalf("table%s: %d %v %s", tt.query, code, err, body)
		}
		var names []string
		for _, c := range tab.Columns {
			if c.Priority == 0 {
				names = append(names, c.Name)
			}
		}
		if got := strings.Join(names, ","); got != "Name,Ready,Up-to-date,Available,Age" {
			t.Errorf("columns %s", got)
		}
		if tab.Rows[0].Cells[0] != "web" || tab.Rows[0].Cells[1] != "0/2" {
			t.Errorf("cells %v", tab.Rows[0].Cells)
		}
		if kind, _ := tab.Rows[0].Object["kind"].(string); kind != tt.object {
			t.Errorf("includeObject%s: row object kind %q, want %q", tt.query, kind, tt.object)
		}
	}
	// An object is a one-row Table; plain JSON stays plain.
	code, _, body := httpDo(t, "GET", env.HTTPURL+"/apis/apps/v1/namespaces/default/deployments/web", "", accept, "")
	if code != 200 || dig(jsonOf(t, body), "kind") != "Table" {
		t.Errorf("object table: %d %s", code, body)
	}
	if _, _, body := httpDo(t, "GET", env.HTTPURL+"/apis/apps/v1/namespaces/default/deployments/web", "", "application/json", ""); dig(jsonOf(t, body), "kind") != "Deployment" {
		t.Errorf("plain JSON get: %s", body)
	}
}

// watchLines opens a REST watch and returns its event lines as they arrive.
func watchLines(t *testing.T, url string) <-chan map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("watch %s: %d %s", url, resp.StatusCode, b)
	}
	out := make(chan map[string]any, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			m := map[string]any{}
			_ = json.Unmarshal(sc.Bytes(), &m)
			out <- m
		}
	}()
	return out
}

func next(t *testing.T, events <-chan map[string]any) map[string]any {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no watch event in 15s")
	}
	return nil
}

func TestWatchBookmarksAndInitialEvents(t *testing.T) {
	env := testenv.Start(t, testenv.Options{Configure: func(c *apiserver.Config) { c.BookmarkInterval = 200 * time.Millisecond }})
	base := env.HTTPURL + "/apis/apps/v1/namespaces/default/deployments"
	if code, _, body := httpDo(t, "POST", base, "application/json", "", deployJSON); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	// client-go's watch-list: the state as ADDED, then a bookmark that ends it.
	events := watchLines(t, base+"?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	ev := next(t, events)
	if ev["type"] != "ADDED" || dig(ev, "object", "metadata", "name") != "web" {
		t.Fatalf("first event %v", ev)
	}
	ev = next(t, events)
	rv, _ := dig(ev, "object", "metadata", "resourceVersion").(string)
	if ev["type"] != "BOOKMARK" || dig(ev, "object", "metadata", "annotations", "k8s.io/initial-events-end") != "true" || rv == "" ||
		dig(ev, "object", "kind") != "Deployment" {
		t.Fatalf("initial-events-end bookmark: %v", ev)
	}
	// Then changes, and periodic bookmarks at the latest version the watch has seen.
	code, _, body := httpDo(t, "PATCH", base+"/web", "application/merge-patch+json", "", `{"spec":{"replicas":3}}`)
	if code != 200 {
		t.Fatalf("patch: %d %s", code, body)
	}
	newRV := dig(jsonOf(t, body), "metadata", "resourceVersion")
	sawModified := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		ev = next(t, events)
		if ev["type"] == "MODIFIED" {
			sawModified = true
		}
		if ev["type"] == "BOOKMARK" && sawModified {
			if got := dig(ev, "object", "metadata", "resourceVersion"); got != newRV {
				t.Errorf("bookmark after the change at %v, want %v", got, newRV)
			}
			break
		}
	}
	if !sawModified {
		t.Error("no MODIFIED event")
	}
	// sendInitialEvents without bookmarks, or without NotOlderThan, is refused as Kubernetes does.
	for _, q := range []string{"?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
		"?watch=true&sendInitialEvents=true&allowWatchBookmarks=true", "?watch=true&resourceVersionMatch=NotOlderThan&resourceVersion=1"} {
		if code, _, body := httpDo(t, "GET", base+q, "", "", ""); code != 422 {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	// sendInitialEvents=false: no state, only changes.
	quiet := watchLines(t, base+"?watch=true&sendInitialEvents=false&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
	httpDo(t, "PATCH", base+"/web", "application/merge-patch+json", "", `{"spec":{"replicas":4}}`)
	for {
		ev := next(t, quiet)
		if ev["type"] == "BOOKMARK" {
			continue
		}
		if ev["type"] != "MODIFIED" || dig(ev, "object", "spec", "replicas") != 4.0 {
			t.Errorf("first event without initial events: %v", ev)
		}
		break
	}
}

// TestKubernetesFieldsSkiffDoesNotModel: under kubectl's default fieldValidation=Strict, a
// field Kubernetes has but Skiff does not model is accepted with a warning; a field neither
// has is refused.
func TestKubernetesFieldsSkiffDoesNotModel(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	pod := func(name, extra string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `"},"spec":{` + extra +
			`"containers":[{"name":"c","image":"busybox","stdin":true}]}}`
	}
	req, _ := http.NewRequest("POST", env.HTTPURL+podsPath+"?fieldValidation=Strict", strings.NewReader(pod("known", `"hostIPC":true,`)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	warnings := strings.Join(resp.Header.Values("Warning"), "\n")
	if resp.StatusCode != http.StatusCreated || !strings.Contains(warnings, `field \"spec.hostIPC\" is not supported by Skiff and was ignored`) ||
		!strings.Contains(warnings, `spec.containers[0].stdin`) {
		t.Errorf("Kubernetes fields under Strict: %d, warnings %q", resp.StatusCode, warnings)
	}
	if code, _, body := httpDo(t, "POST", env.HTTPURL+podsPath+"?fieldValidation=Strict", "application/json", "", pod("bogus", `"bogus":1,`)); code != 400 ||
		!strings.Contains(string(body), `strict decoding error: unknown field \"spec.bogus\"`) {
		t.Errorf("a field Kubernetes does not have either: %d %s", code, body)
	}
}

// TestWatchListsShareTheirInitialState: client-go informers start with watch-lists, often a
// fleet at once. Watch-lists of one selection share one read of the state while it is as new
// as each needs: ten in a row read it once; after a write, the next reads again and sees it.
func TestWatchListsShareTheirInitialState(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	for i := range 5 {
		if _, err := env.Client.Create(ctx, newPod(fmt.Sprintf("wl-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	metric := func(name string) int { return metricValue(t, env, name) }
	initial := func() []string {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", env.HTTPURL+"/api/v1/namespaces/default/pods"+
			"?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var names []string
		dec := json.NewDecoder(resp.Body)
		for {
			var ev map[string]any
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("watch-list ended after %v: %v", names, err)
			}
			if ev["type"] == "BOOKMARK" {
				return names
			}
			names = append(names, fmt.Sprint(dig(ev, "object", "metadata", "name")))
		}
	}
	reads0, shares0 := metric("skiff_apiserver_watch_initial_lists_read_total"), metric("skiff_apiserver_watch_initial_lists_shared_total")
	for i := range 10 {
		if got := initial(); len(got) != 5 {
			t.Fatalf("watch-list %d: initial %v; want the 5 pods", i, got)
		}
	}
	// A shared state is kept for sharedListTTL (1 s): on a quiet machine the ten share one
	// read; a loaded one may need a few.
	if r, s := metric("skiff_apiserver_watch_initial_lists_read_total")-reads0, metric("skiff_apiserver_watch_initial_lists_shared_total")-shares0; r+s != 10 || s < 5 {
		t.Errorf("ten watch-lists in a row: %d reads, %d shared; want most of them shared (1 read shared 9 times when quiet)", r, s)
	}
	if _, err := env.Client.Create(ctx, newPod("wl-new")); err != nil {
		t.Fatal(err)
	}
	if got := initial(); len(got) != 6 || !slices.Contains(got, "wl-new") {
		t.Errorf("watch-list after a write: initial %v; want the 6 pods with wl-new (never an older shared state)", got)
	}
}
