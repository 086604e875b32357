package apiserver_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/skiff-project/skiff/internal/testenv"
)

// hostileCase is one request of the corpus and the answer it must get: want is the exact
// status code, or 0 for "some 4xx" where which one is not the point (404 or 405 for a route
// that does not exist).
type hostileCase struct {
	name    string
	request rawRequest
	want    int
}

// mutationBase is a pod with a value of every JSON type at several depths; the corpus
// replaces each value with values of other types.
const mutationBase = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"NAME","labels":{"app":"web"},"annotations":{"note":"x"}},
 "spec":{"restartPolicy":"Always","terminationGracePeriodSeconds":30,"nodeSelector":{"disk":"ssd"},
 "containers":[{"name":"web","image":"nginx","args":["--x"],"ports":[{"containerPort":80,"protocol":"TCP"}],
 "env":[{"name":"A","value":"b"}],"resources":{"requests":{"cpu":"100m"}},
 "readinessProbe":{"httpGet":{"path":"/","port":8080},"periodSeconds":5}}]}}`

func basePod(name string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.Replace(mutationBase, "NAME", name, 1)), &m); err != nil {
		panic(err)
	}
	return m
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// valuePaths lists the path of every value below the root, parents first.
func valuePaths(v any, prefix []any) [][]any {
	var out [][]any
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := append(slices.Clone(prefix), k)
			out = append(out, p)
			out = append(out, valuePaths(v[k], p)...)
		}
	case []any:
		for i, e := range v {
			p := append(slices.Clone(prefix), i)
			out = append(out, p)
			out = append(out, valuePaths(e, p)...)
		}
	}
	return out
}

// replaced returns a copy of root (a decoded JSON value) with the value at path set to val.
func replaced(root any, path []any, val any) any {
	if len(path) == 0 {
		return val
	}
	switch r := root.(type) {
	case map[string]any:
		out := make(map[string]any, len(r))
		for k, v := range r {
			out[k] = v
		}
		out[path[0].(string)] = replaced(r[path[0].(string)], path[1:], val)
		return out
	case []any:
		out := slices.Clone(r)
		out[path[0].(int)] = replaced(r[path[0].(int)], path[1:], val)
		return out
	}
	panic("path through a scalar")
}

func valueAt(root any, path []any) any {
	for _, p := range path {
		switch r := root.(type) {
		case map[string]any:
			root = r[p.(string)]
		case []any:
			root = r[p.(int)]
		}
	}
	return root
}

func pathString(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		}
	}
	return b.String()
}

// wrongTypes are values of other JSON types than v's. Where a field takes more than one type
// (a quantity may be a number, an IntOrString a number or a string) the ones it takes are left
// out: those are valid.
func wrongTypes(path string, v any) []any {
	quantity := strings.Contains(path, ".resources.")
	intOrString := strings.HasSuffix(path, "httpGet.port")
	var out []any
	for _, w := range []any{"x", float64(1), true, []any{}, map[string]any{}} {
		switch w.(type) {
		case string:
			if _, same := v.(string); same || intOrString {
				continue
			}
		case float64:
			if _, same := v.(float64); same || quantity || intOrString {
				continue
			}
		case bool:
			if _, same := v.(bool); same {
				continue
			}
		case []any:
			if _, same := v.([]any); same {
				continue
			}
		case map[string]any:
			if _, same := v.(map[string]any); same {
				continue
			}
		}
		out = append(out, w)
	}
	return out
}

// hostileCorpus is the table of malformed and oversized requests; web is an existing pod in
// the default namespace.
func hostileCorpus(web string) []hostileCase {
	var cases []hostileCase
	add := func(want int, name string, rq rawRequest) {
		cases = append(cases, hostileCase{name: name, request: rq, want: want})
	}
	post := func(body []byte) rawRequest { return rawRequest{method: "POST", target: podsPath, body: body} }
	put := func(body []byte) rawRequest {
		return rawRequest{method: "PUT", target: podsPath + "/" + web, body: body}
	}

	// Truncated JSON, on create and on update.
	for _, target := range []struct {
		name string
		body []byte
		rq   func([]byte) rawRequest
		step int
	}{{"mutant", mustJSON(basePod("mutant")), post, 4}, {web, mustJSON(basePod(web)), put, 11}} {
		for i := 0; i < len(target.body); i += target.step {
			add(400, fmt.Sprintf("truncated at %d", i), target.rq(target.body[:i]))
		}
	}

	// A value of the wrong type at every level, on create and on update.
	for _, target := range []struct {
		name string
		rq   func([]byte) rawRequest
	}{{"mutant", post}, {web, put}} {
		base := basePod(target.name)
		for _, p := range valuePaths(base, nil) {
			ps := pathString(p)
			for _, w := range wrongTypes(ps, valueAt(base, p)) {
				add(400, fmt.Sprintf("%s=%s", ps, mustJSON(w)), target.rq(mustJSON(replaced(base, p, w))))
			}
		}
	}

	// Numbers no field can hold.
	base := basePod("mutant")
	huge := []struct {
		path []any
		lit  string
		want int
	}{
		{[]any{"spec", "containers", 0, "ports", 0, "containerPort"}, "1e400", 400},
		{[]any{"spec", "containers", 0, "ports", 0, "containerPort"}, "99999999999999999999", 400},
		{[]any{"spec", "containers", 0, "ports", 0, "containerPort"}, "2147483648", 400},
		{[]any{"spec", "containers", 0, "ports", 0, "containerPort"}, "-1e20", 400},
		{[]any{"spec", "containers", 0, "ports", 0, "containerPort"}, "1.5", 400},
		{[]any{"spec", "containers", 0, "ports", 0, "containerPort"}, "70000", 422},
		{[]any{"spec", "terminationGracePeriodSeconds"}, "9223372036854775808", 400},
		{[]any{"spec", "terminationGracePeriodSeconds"}, "-9223372036854775809", 400},
		{[]any{"spec", "terminationGracePeriodSeconds"}, "1e19", 400},
		{[]any{"spec", "terminationGracePeriodSeconds"}, `"9223372036854775808"`, 400},
		{[]any{"spec", "terminationGracePeriodSeconds"}, `"30s"`, 400},
		{[]any{"spec", "containers", 0, "readinessProbe", "periodSeconds"}, "1e10", 400},
		{[]any{"spec", "containers", 0, "readinessProbe", "httpGet", "port"}, "99999999999", 400},
		{[]any{"metadata", "generation"}, "1e300", 400},
		{[]any{"metadata", "generation"}, "-0.5", 400},
		{[]any{"metadata", "deletionGracePeriodSeconds"}, "1" + strings.Repeat("0", 400), 400},
	}
	for _, h := range huge {
		body := mustJSON(replaced(base, h.path, json.RawMessage(h.lit)))
		add(h.want, fmt.Sprintf("%s=%s", pathString(h.path), h.lit), post(body))
	}

	// Deep nesting: valid JSON in an unknown field is skipped (the namespace does not exist,
	// so nothing can be stored); deeper than JSON allows is 400.
	nowhere := "/api/v1/namespaces/nowhere/pods"
	const validSpec = `"spec":{"containers":[{"name":"c","image":"busybox"}]}`
	nested := func(depth int, open, inner, close string) []byte {
		return []byte(`{"metadata":{"name":"deep"},` + validSpec + `,"deep":` +
			strings.Repeat(open, depth) + inner + strings.Repeat(close, depth) + `}`)
	}
	add(404, "unknown field nested 5000 deep", rawRequest{method: "POST", target: nowhere, body: nested(5000, "[", "", "]")})
	add(404, "unknown field nested 5000 objects deep", rawRequest{method: "POST", target: nowhere, body: nested(5000, `{"a":`, "1", "}")})
	add(400, "nested 20000 deep", post(nested(20000, "[", "", "]")))
	add(400, "nested 200000 deep", post(nested(200000, `{"a":`, "1", "}")))
	add(400, "known field nested", post(mustJSON(replaced(base, []any{"metadata", "labels", "app"}, map[string]any{"a": map[string]any{"b": []any{}}}))))
	var wide bytes.Buffer
	wide.WriteString(`{"metadata":{"name":"wide"},` + validSpec)
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&wide, `,"f%d":[{}]`, i)
	}
	wide.WriteString("}")
	add(400, "20000 unknown fields, Strict", rawRequest{method: "POST", target: podsPath + "?fieldValidation=Strict", body: wide.Bytes()})
	add(404, "20000 unknown fields", rawRequest{method: "POST", target: nowhere, body: wide.Bytes()})

	// NUL bytes, control characters and invalid UTF-8.
	pod := mustJSON(base)
	add(400, "raw NUL in a string", post(bytes.Replace(pod, []byte(`"mutant"`), []byte("\"mu\x00tant\""), 1)))
	add(400, "raw NUL between values", post(bytes.Replace(pod, []byte(`,"kind"`), []byte("\x00,\"kind\""), 1)))
	add(400, "raw newline in a string", post(bytes.Replace(pod, []byte(`"mutant"`), []byte("\"mu\ntant\""), 1)))
	add(422, "escaped NUL in the name", post(bytes.Replace(pod, []byte(`"mutant"`), []byte(`"mu\u0000tant"`), 1)))
	add(422, "lone surrogate in the name", post(bytes.Replace(pod, []byte(`"mutant"`), []byte(`"mu\ud800tant"`), 1)))
	add(422, "invalid UTF-8 in the name", post(bytes.Replace(pod, []byte(`"mutant"`), []byte("\"mu\xff\xfetant\""), 1)))
	add(422, "invalid UTF-8 in a label value", post(bytes.Replace(pod, []byte(`"web"}`), []byte("\"w\xc3\x28b\"}"), 1)))
	add(400, "invalid UTF-8 outside strings", post(append([]byte("\xff"), pod...)))
	add(400, "UTF-8 byte order mark", post(append([]byte("\xef\xbb\xbf"), pod...)))
	add(400, "UTF-16", post(utf16(pod)))
	add(400, "NUL bytes only", post(make([]byte, 1000)))

	// Wrong kinds and API versions.
	for _, tm := range []struct{ apiVersion, kind string }{
		{"v1", "Service"}, {"apps/v1", "Pod"}, {"v2", "Pod"}, {"apps/v1", "Deployment"}, {"v1", "pod"}, {"V1", "Pod"},
		{"v1", "PodList"}, {"v1", "Status"}, {"meta/v1", "DeleteOptions"},
	} {
		add(400, fmt.Sprintf("%s %s to pods", tm.apiVersion, tm.kind),
			post(mustJSON(replaced(replaced(base, []any{"apiVersion"}, tm.apiVersion), []any{"kind"}, tm.kind))))
	}
	add(400, "a Pod to deployments", rawRequest{method: "POST", target: "/apis/apps/v1/namespaces/default/deployments", body: pod})
	add(400, "a Pod to nodes", rawRequest{method: "POST", target: "/api/v1/nodes", body: pod})
	add(0, "a Pod as a Binding", rawRequest{method: "POST", target: podsPath + "/" + web + "/binding", body: pod})

	// Names with slashes, in the body and in the path.
	for _, name := range []string{"a/b", "..", ".", "a%2Fb", "web/status", "/", "a b", strings.Repeat("a", 300)} {
		add(422, fmt.Sprintf("name %q in the body", name), post(mustJSON(replaced(base, []any{"metadata", "name"}, name))))
	}
	for _, p := range []string{"web%2Fstatus", "web%2fbinding", "web%2F..", "%2F", "web%25", "web%252F"} {
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			rq := rawRequest{method: m, target: podsPath + "/" + p}
			if m == "PUT" {
				rq.body = mustJSON(basePod(web))
			}
			add(400, "name "+p, rq)
		}
		add(400, "binding of "+p, rawRequest{method: "POST", target: podsPath + "/" + p + "/binding", body: []byte(`{"target":{"name":"n"}}`)})
	}

	// Bad selectors, listing and watching.
	for _, sel := range []string{"labelSelector=app+in+()", "labelSelector=app+notin+()", "labelSelector=app%3D(", "labelSelector=%3D%3D%3D",
		"labelSelector=!", "labelSelector=a+in+(x", "labelSelector=app%3D" + strings.Repeat("x", 64), "labelSelector=app%3D%3Dx%3D%3Dy",
		"labelSelector=-a", "labelSelector=a,", "labelSelector=,", "fieldSelector=spec.nope%3Dx", "fieldSelector=metadata.name%3Da,%3D",
		"fieldSelector=status.phase%3D%3DPending%3D%3Dx", "fieldSelector=spec.containers%3Dx", "fieldSelector=%3D"} {
		add(400, "list with "+sel, rawRequest{method: "GET", target: podsPath + "?" + sel})
		add(400, "watch with "+sel, rawRequest{method: "GET", target: podsPath + "?watch=true&" + sel})
		add(400, "list all namespaces with "+sel, rawRequest{method: "GET", target: "/api/v1/pods?" + sel})
	}

	// Every bad parameter of the REST contract.
	for _, pc := range badParameters(web) {
		add(pc.code, "parameter "+pc.field, pc.request)
	}

	// Wrong content types on every write.
	for _, ct := range []string{"text/plain", "application/yaml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
		"application/xml", "application/merge-patch+json", "text/json", "*/*", "application/json;;"} {
		add(415, "create as "+ct, rawRequest{method: "POST", target: podsPath, contentType: ct, body: pod})
		add(415, "update as "+ct, rawRequest{method: "PUT", target: podsPath + "/" + web, contentType: ct, body: mustJSON(basePod(web))})
		add(415, "status as "+ct, rawRequest{method: "PUT", target: podsPath + "/" + web + "/status", contentType: ct, body: mustJSON(basePod(web))})
		add(415, "bind as "+ct, rawRequest{method: "POST", target: podsPath + "/" + web + "/binding", contentType: ct, body: []byte(`{"target":{"name":"n"}}`)})
		add(415, "delete as "+ct, rawRequest{method: "DELETE", target: podsPath + "/" + web, contentType: ct, body: []byte(`{"kind":"DeleteOptions"}`)})
	}
	// Kubernetes' protobuf is read (kubectl's typed clients send it): JSON sent as protobuf, without
	// its k8s\x00 prefix, is a malformed body.
	add(400, "create as protobuf", rawRequest{method: "POST", target: podsPath, contentType: "application/vnd.kubernetes.protobuf", body: pod})
	add(400, "update as protobuf", rawRequest{method: "PUT", target: podsPath + "/" + web, contentType: "application/vnd.kubernetes.protobuf", body: mustJSON(basePod(web))})
	add(400, "delete as protobuf", rawRequest{method: "DELETE", target: podsPath + "/" + web, contentType: "application/vnd.kubernetes.protobuf", body: []byte(`{"kind":"DeleteOptions"}`)})
	add(415, "form posted as a query", rawRequest{method: "POST", target: podsPath, contentType: "application/x-www-form-urlencoded", body: []byte("dryRun=All&fieldValidation=Ignore")})

	// Empty and non-object bodies.
	for _, body := range []string{"", " ", "\n\r\t", "null", "[]", `"pod"`, "1", "true", "{", "}", "[{}]"} {
		add(400, fmt.Sprintf("create with %q", body), post([]byte(body)))
		add(400, fmt.Sprintf("update with %q", body), put([]byte(body)))
		add(400, fmt.Sprintf("bind with %q", body), rawRequest{method: "POST", target: podsPath + "/" + web + "/binding", body: []byte(body)})
	}
	add(400, "create with no body at all", rawRequest{method: "POST", target: podsPath})
	add(400, "update with no body at all", rawRequest{method: "PUT", target: podsPath + "/" + web, contentType: noContentType})

	// Garbage after the object, two objects, times that are not times, Strict.
	add(400, "trailing garbage", post(append(slices.Clone(pod), "garbage"...)))
	add(400, "two objects", post(append(slices.Clone(pod), pod...)))
	add(400, "creationTimestamp yesterday", post(mustJSON(replaced(base, []any{"metadata", "creationTimestamp"}, "yesterday"))))
	add(400, "deletionTimestamp tomorrow", put(mustJSON(replaced(basePod(web), []any{"metadata", "deletionTimestamp"}, "tomorrow"))))
	add(400, "unknown field under Strict", rawRequest{method: "POST", target: podsPath + "?fieldValidation=Strict",
		body: mustJSON(replaced(base, []any{"spec", "foo"}, 1))})
	add(400, "duplicate field under Strict", rawRequest{method: "POST", target: podsPath + "?fieldValidation=Strict",
		body: bytes.Replace(pod, []byte(`"kind":"Pod"`), []byte(`"kind":"Pod","kind":"Pod"`), 1)})

	// Operations on paths that do not exist, and methods no path allows.
	for _, p := range []string{"/", "/api", "/apis", "/api/v1", "/api/v2/pods", "/apis/apps/v2/deployments", "/apis/nope/v1/things",
		"/api/v1/namespaces/default/nothing", "/api/v1/namespaces/default/nothing/x", "/api/v1/namespaces/default/pods/" + web + "/log",
		"/api/v1/namespaces/default/pods/" + web + "/status/extra", "/api/v1/namespaces/default/pods/" + web + "/binding/x",
		"/api/v1/namespaces/default/pods/" + web + "/eviction", "/api/v1/namespaces/default/nodes", "/api/v1/nodes/n/pods",
		"/apis/apps/v1/pods", "/api/v1/deployments", "/metrics/x", "/healthz/x", "/openapi/v3"} {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			if m == "GET" && slices.Contains([]string{"/api", "/apis", "/api/v1", "/openapi/v3"}, p) {
				continue // discovery and OpenAPI: GET is served
			}
			rq := rawRequest{method: m, target: p}
			if m == "POST" || m == "PUT" || m == "PATCH" {
				rq.body = mustJSON(basePod(web))
			}
			add(0, m+" "+p, rq)
		}
	}
	for _, m := range []string{"PATCH", "OPTIONS", "TRACE", "CONNECTX", "PROPFIND"} {
		add(0, m+" object", rawRequest{method: m, target: podsPath + "/" + web, body: []byte(`{"metadata":{"labels":{"x":"y"}}}`)})
	}
	add(0, "PUT collection", rawRequest{method: "PUT", target: podsPath, body: mustJSON(basePod(web))})
	add(0, "DELETE collection", rawRequest{method: "DELETE", target: podsPath})
	add(0, "DELETE all namespaces' pods", rawRequest{method: "DELETE", target: "/api/v1/pods"})
	add(0, "POST object", rawRequest{method: "POST", target: podsPath + "/" + web, body: mustJSON(basePod(web))})
	add(0, "GET binding", rawRequest{method: "GET", target: podsPath + "/" + web + "/binding"})
	add(404, "update a pod that does not exist", rawRequest{method: "PUT", target: podsPath + "/ghost", body: mustJSON(basePod("ghost"))})
	add(404, "delete a pod that does not exist", rawRequest{method: "DELETE", target: podsPath + "/ghost"})
	add(404, "bind a pod that does not exist", rawRequest{method: "POST", target: podsPath + "/ghost/binding",
		body: []byte(`{"metadata":{"name":"ghost"},"target":{"name":"n"}}`)})
	add(404, "create in a namespace that does not exist", rawRequest{method: "POST", target: nowhere, body: pod})
	add(404, "update in a namespace that does not exist", rawRequest{method: "PUT", target: nowhere + "/" + web, body: mustJSON(basePod(web))})

	// Paths a cleaning mux would turn into other resources.
	for _, p := range []string{"/api/v1/namespaces//pods", "/api/v1/namespaces/default/pods/", "/api/v1/namespaces/default/pods//" + web,
		"/api/v1/namespaces/default/pods/./" + web, "/api/v1/namespaces/x/../default/pods/" + web, "/api/v1/namespaces/%2E%2E/pods",
		"/api/v1/namespaces/default/pods/" + web + "/", "//api/v1/namespaces/default/pods"} {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			rq := rawRequest{method: m, target: p}
			if m == "POST" || m == "PUT" {
				rq.body = mustJSON(basePod(web))
			}
			add(404, m+" "+p, rq)
		}
	}

	// Dry runs of every write: answered as the write would be, changing nothing.
	dryPod := basePod("dry-run")
	add(201, "dry-run create", rawRequest{method: "POST", target: podsPath + "?dryRun=All", body: mustJSON(dryPod)})
	relabelled := basePod(web)
	relabelled["metadata"].(map[string]any)["labels"] = map[string]any{"app": "changed"}
	add(200, "dry-run update", rawRequest{method: "PUT", target: podsPath + "/" + web + "?dryRun=All", body: mustJSON(relabelled)})
	add(200, "dry-run status update", rawRequest{method: "PUT", target: podsPath + "/" + web + "/status?dryRun=All",
		body: []byte(`{"metadata":{"name":"` + web + `"},"status":{"phase":"Running"}}`)})
	add(201, "dry-run binding", rawRequest{method: "POST", target: podsPath + "/" + web + "/binding?dryRun=All",
		body: []byte(`{"metadata":{"name":"` + web + `"},"target":{"kind":"Node","name":"n1"}}`)})
	add(200, "dry-run delete", rawRequest{method: "DELETE", target: podsPath + "/" + web + "?dryRun=All"})
	add(200, "dry-run delete in the body", rawRequest{method: "DELETE", target: podsPath + "/" + web, body: []byte(`{"dryRun":["All"]}`)})
	add(200, "dry-run namespace delete", rawRequest{method: "DELETE", target: "/api/v1/namespaces/pods?dryRun=All"})

	// Malformed and failing DeleteOptions bodies delete nothing.
	for _, body := range []string{`{"kind":`, `[]`, `"x"`, `{"gracePeriodSeconds":"soon"}`, `{"preconditions":[]}`, `{} {}`,
		`{"orphanDependents":"yes"}`, `{"dryRun":"All"}`} {
		add(400, "delete with body "+body, rawRequest{method: "DELETE", target: podsPath + "/" + web, body: []byte(body)})
	}
	add(409, "delete with a failing uid precondition", rawRequest{method: "DELETE", target: podsPath + "/" + web,
		body: []byte(`{"preconditions":{"uid":"not-its-uid"}}`)})
	add(409, "delete with a failing resourceVersion precondition", rawRequest{method: "DELETE", target: podsPath + "/" + web,
		body: []byte(`{"preconditions":{"resourceVersion":"1"}}`)})
	add(422, "delete with an unknown propagationPolicy in the body", rawRequest{method: "DELETE", target: podsPath + "/" + web,
		body: []byte(`{"propagationPolicy":"Later"}`)})

	// Valid objects above the object size limit (the 12,000 env vars), under the body limit.
	big := basePod("big")
	var env []any
	for i := range 12000 {
		env = append(env, map[string]any{"name": fmt.Sprintf("VAR_%05d", i), "value": strings.Repeat("v", 90)})
	}
	big["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"] = env
	add(413, "create of a 1.3 MB pod", rawRequest{method: "POST", target: podsPath, body: mustJSON(big)})

	// Oversized bodies, sent from a generator.
	g := newGeneratedBody(100<<20, nil)
	add(413, "100 MiB with Content-Length", rawRequest{method: "POST", target: podsPath, bodyReader: g, length: g.size(), expectContinue: true})
	g = newGeneratedBody(8<<20, nil)
	add(413, "8 MiB chunked", rawRequest{method: "PUT", target: podsPath + "/" + web, bodyReader: g, length: -1})
	return cases
}

func utf16(b []byte) []byte {
	out := []byte{0xff, 0xfe}
	for _, c := range b {
		out = append(out, c, 0)
	}
	return out
}

// TestRESTHostileCorpusChangesNothing sends the corpus to the real server: every request gets
// the expected 4xx Status (never a 5xx or a redirect), nothing is stored, changed or deleted,
// no event is published, and the heap stays small.
func TestRESTHostileCorpusChangesNothing(t *testing.T) {
	env := testenv.Start(t)
	js := env.JetStream(t)
	c := rawClient()
	setup := []rawRequest{
		{method: "POST", target: "/api/v1/namespaces", body: []byte(`{"metadata":{"name":"pods"}}`)},
		{method: "POST", target: "/api/v1/namespaces/pods/pods", body: mustJSON(basePod("victim"))},
		{method: "POST", target: podsPath, body: mustJSON(basePod("web"))},
	}
	for _, rq := range setup {
		if r := mustSend(t, c, env.HTTPURL, rq); r.code != 201 {
			t.Fatalf("setup %s %s: %s", rq.method, rq.target, r)
		}
	}
	before := settled(t, env, js)
	corpus := hostileCorpus("web")
	if len(corpus) < 500 {
		t.Fatalf("the corpus has %d requests; it is meant to have hundreds", len(corpus))
	}

	heapBefore := heapAfterGC()
	peak := startHeapPeak()
	codes := map[int]int{}
	for _, hc := range corpus {
		resp, err := send(t, c, env.HTTPURL, hc.request)
		what := fmt.Sprintf("%s (%s %.120s)", hc.name, hc.request.method, hc.request.target)
		if err != nil {
			t.Errorf("%s: %v", what, err)
			continue
		}
		codes[resp.code]++
		switch {
		case resp.code >= 500:
			t.Errorf("%s: server error %s", what, resp)
		case resp.code < 400 && (hc.want == 0 || hc.want >= 400):
			t.Errorf("%s: accepted with %s; want a refusal", what, resp)
		case resp.code < 400 && resp.code != hc.want:
			t.Errorf("%s: got %s; want %d", what, resp, hc.want)
		case resp.code < 400: // a dry run: answered like the write, and (checked below) nothing changed
		case hc.want != 0 && resp.code != hc.want:
			t.Errorf("%s: got %s; want %d", what, resp, hc.want)
		case resp.status["kind"] != "Status" || resp.status["code"] != float64(resp.code):
			t.Errorf("%s: the %d answer is not a Status: %s", what, resp.code, resp)
		}
	}
	peakHeap := peak.Stop()
	heapAfter := heapAfterGC()
	t.Logf("%d requests, answers by code %v; heap %d MiB before, peak %d MiB, %d MiB after GC",
		len(corpus), codes, heapBefore>>20, peakHeap>>20, heapAfter>>20)
	if peakHeap > heapBefore+96<<20 {
		t.Errorf("heap peaked %d MiB above the %d MiB before", (peakHeap-heapBefore)>>20, heapBefore>>20)
	}
	if heapAfter > heapBefore+16<<20 {
		t.Errorf("heap after GC is %d MiB above before", (heapAfter-heapBefore)>>20)
	}
	for _, p := range []string{"/api/v1/namespaces/pods", "/api/v1/namespaces/pods/pods/victim", podsPath + "/web"} {
		if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "GET", target: p}); r.code != 200 {
			t.Errorf("GET %s after the corpus: %s", p, r)
		}
	}
	checkNothingChanged(t, env, js, before)
}

// FuzzRESTFront sends fuzzed requests to a real server: whatever comes in, the answer is
// never a 5xx or a redirect, and every error is a Status. (Fuzzed bodies may be valid
// objects, so stored state is not checked here; the corpus test does that.)
func FuzzRESTFront(f *testing.F) {
	for i, hc := range hostileCorpus("web") {
		if i%13 != 0 || hc.request.bodyReader != nil {
			continue
		}
		ct := hc.request.contentType
		if ct == "" {
			ct = "application/json"
		}
		f.Add(hc.request.method, hc.request.target, ct, hc.request.body)
	}
	f.Add("POST", podsPath+"?fieldValidation=Strict&dryRun=All", "application/json", mustJSON(basePod("seed")))
	f.Add("DELETE", podsPath+"/web?gracePeriodSeconds=0&propagationPolicy=Background", "application/json", []byte(`{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"x"}}`))
	f.Add("GET", podsPath+"?watch=true&timeoutSeconds=1&labelSelector=app%3Dweb", "", []byte(nil))

	env := testenv.Start(f)
	c := rawClient()
	var sent atomic.Int64
	if r := mustSend(f, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: mustJSON(basePod("web"))}); r.code != 201 {
		f.Fatalf("setup: %s", r)
	}
	f.Fuzz(func(t *testing.T, method, target, contentType string, body []byte) {
		u, err := url.Parse(env.HTTPURL + target)
		if err != nil || !strings.HasPrefix(target, "/") || u.RequestURI() != target || u.Host != strings.TrimPrefix(env.HTTPURL, "http://") {
			t.Skip("not a request target")
		}
		if _, err := http.NewRequest(method, env.HTTPURL, nil); err != nil || method == "CONNECT" {
			t.Skip("not a method")
		}
		if strings.ContainsFunc(contentType, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
			t.Skip("not a header value")
		}
		// A watch runs until its timeout; the first timeoutSeconds counts, so this one does.
		if method == "GET" {
			path, query, _ := strings.Cut(target, "?")
			target = path + "?timeoutSeconds=1&" + query
		}
		if contentType == "" {
			contentType = noContentType
		}
		resp, err := send(t, c, env.HTTPURL, rawRequest{method: method, target: target, contentType: contentType, body: body})
		sent.Add(1)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		if resp.code >= 500 || (resp.code >= 300 && resp.code < 400) {
			t.Fatalf("%s %s (%q, %q): %s", method, target, contentType, body, resp)
		}
		if resp.code >= 400 && method != "HEAD" && (resp.status["kind"] != "Status" || resp.status["code"] != float64(resp.code)) {
			t.Fatalf("%s %s: the %d answer is not a Status: %s", method, target, resp.code, resp)
		}
	})
}
