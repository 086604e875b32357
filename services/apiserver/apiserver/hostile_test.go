package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skiff-project/skiff/internal/limits"
	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
)

// Requests here are sent the way careless users and Kubernetes clients send them: paths
// exactly as written (never cleaned by the client), redirects not followed (a 3xx is itself a
// failure), bodies of any size from generators rather than memory.

// rawRequest is one HTTP request, sent verbatim.
type rawRequest struct {
	method string
	// target is the path and query exactly as they go on the wire.
	target string
	// contentType is sent when not empty; noContentType sends no header at all.
	contentType string
	body        []byte
	// bodyReader, when set, is the body instead of body; length is its Content-Length, or -1
	// for a chunked body of unknown length.
	bodyReader io.Reader
	length     int64
	// expectContinue sends "Expect: 100-continue", so the body goes only if the server asks.
	expectContinue bool
}

const noContentType = "-"

// response is what came back.
type response struct {
	code   int
	header http.Header
	body   []byte
	status map[string]any // the body as JSON, when it is an object
}

func (r response) String() string {
	b := r.body
	if len(b) > 400 {
		b = append(b[:400:400], "..."...)
	}
	return fmt.Sprintf("%d %s", r.code, b)
}

// rawClient sends rawRequests; it never follows redirects and waits for 100-continue.
func rawClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ExpectContinueTimeout = 10 * time.Second
	return &http.Client{Transport: tr, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func send(t testing.TB, c *http.Client, base string, rq rawRequest) (response, error) {
	t.Helper()
	u, err := url.Parse(base + rq.target)
	if err != nil {
		t.Fatalf("target %q: %v", rq.target, err)
	}
	var body io.Reader
	length := int64(len(rq.body))
	switch {
	case rq.bodyReader != nil:
		body, length = rq.bodyReader, rq.length
	case rq.body != nil:
		body = bytes.NewReader(rq.body)
	}
	req, err := http.NewRequest(rq.method, base, body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL = u
	if got := u.RequestURI(); got != rq.target {
		t.Fatalf("the client would send %q instead of %q", got, rq.target)
	}
	req.ContentLength = length
	if length < 0 {
		req.TransferEncoding = []string{"chunked"}
	}
	switch rq.contentType {
	case "":
		if rq.body != nil || rq.bodyReader != nil {
			req.Header.Set("Content-Type", "application/json")
		}
	case noContentType:
	default:
		req.Header.Set("Content-Type", rq.contentType)
	}
	if rq.expectContinue {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	out := response{code: resp.StatusCode, header: resp.Header, body: data}
	_ = json.Unmarshal(data, &out.status)
	return out, nil
}

// mustSend sends rq and fails the test on a transport error.
func mustSend(t testing.TB, c *http.Client, base string, rq rawRequest) response {
	t.Helper()
	resp, err := send(t, c, base, rq)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.method, rq.target, err)
	}
	return resp
}

// checkStatus fails unless resp is the Kubernetes Status of an error with this code.
func checkStatus(t testing.TB, what string, resp response, code int) {
	t.Helper()
	if resp.code != code {
		t.Errorf("%s: got %s; want %d", what, resp, code)
		return
	}
	if resp.status["kind"] != "Status" || resp.status["code"] != float64(code) || resp.status["status"] != "Failure" {
		t.Errorf("%s: the answer is not a %d Status: %s", what, code, resp)
	}
}

// causeField returns the field of the Status's first cause.
func causeField(resp response) string {
	causes, _ := dig(resp.status, "details", "causes").([]any)
	if len(causes) == 0 {
		return ""
	}
	f, _ := causes[0].(map[string]any)["field"].(string)
	return f
}

// quiet is what a test compares before and after the hostile requests: every stored object's
// key and mod revision, and the bus's last message. (etcd's own revision also moves for the
// publisher's election key, which is not the API's state.)
type quiet struct {
	objects  map[string]int64
	sequence uint64
}

// storedObjects reads every key of the registry with its mod revision and the newest of them.
func storedObjects(t *testing.T, env *testenv.Env) (map[string]int64, int64) {
	t.Helper()
	resp, err := env.Etcd.Get(context.Background(), env.APIServer.Registry().Prefix()+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	objects, newest := map[string]int64{}, int64(0)
	for _, kv := range resp.Kvs {
		objects[string(kv.Key)] = kv.ModRevision
		newest = max(newest, kv.ModRevision)
	}
	return objects, newest
}

// settled waits until the publisher has published the newest stored change, then returns the
// state to compare with later.
func settled(t *testing.T, env *testenv.Env, js jetstream.JetStream) quiet {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		objects, newest := storedObjects(t, env)
		seq, msgRev := lastMessage(t, js)
		if msgRev == newest {
			return quiet{objects: objects, sequence: seq}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bus did not catch up with etcd: newest object at revision %d, last message at %d", newest, msgRev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastMessage returns the stream's last sequence and the etcd revision its message carries.
func lastMessage(t *testing.T, js jetstream.JetStream) (uint64, int64) {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		return 0, 0 // not created yet
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq == 0 {
		return 0, 0
	}
	msg, err := stream.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := strconv.ParseInt(msg.Header.Get(bus.HeaderRevision), 10, 64)
	return info.State.LastSeq, rev
}

// checkNothingChanged fails if any stored object was created, changed or deleted since before,
// or if the bus published anything but the sentinel written now (which shows the publisher
// has caught up).
func checkNothingChanged(t *testing.T, env *testenv.Env, js jetstream.JetStream, before quiet) {
	t.Helper()
	now, _ := storedObjects(t, env)
	for key, rev := range now {
		if old, ok := before.objects[key]; !ok {
			t.Errorf("hostile requests stored %s (revision %d)", key, rev)
		} else if old != rev {
			t.Errorf("hostile requests changed %s (revision %d, was %d)", key, rev, old)
		}
	}
	for key := range before.objects {
		if _, ok := now[key]; !ok {
			t.Errorf("hostile requests deleted %s", key)
		}
	}
	sentinel, err := env.Client.Create(context.Background(), &corev1.Namespace{
		Metadata: &metav1.ObjectMeta{GenerateName: "sentinel-"}})
	if err != nil {
		t.Fatal(err)
	}
	sentinelRev := sentinel.GetMetadata().GetResourceVersion()
	after := settled(t, env, js)
	ctx := context.Background()
	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	for seq := before.sequence + 1; seq <= after.sequence; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if rev := msg.Header.Get(bus.HeaderRevision); rev != sentinelRev {
			t.Errorf("the bus published %s (%s at revision %s) for a hostile request", msg.Subject,
				msg.Header.Get(bus.HeaderType), rev)
		}
	}
	if after.sequence == before.sequence {
		t.Errorf("the sentinel was not published")
	}
}

// heapPeak samples the heap (live and not yet collected objects) until stopped, without
// stopping the world, and reports the highest value seen.
type heapPeak struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Uint64
}

const heapObjectsMetric = "/memory/classes/heap/objects:bytes"

func heapNow() uint64 {
	s := []metrics.Sample{{Name: heapObjectsMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if v := heapNow(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) Stop() uint64 {
	close(h.stop)
	<-h.done
	return h.peak.Load()
}

// heapAfterGC is the live heap once garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// generatedBody is a pod JSON of the given total size whose bulk is one annotation, produced
// as it is read: the test never holds it in memory. sent counts the bytes the client read.
type generatedBody struct {
	prefix, suffix string
	fill           int64
	pos            int64
	sent           *atomic.Int64
}

func newGeneratedBody(size int64, sent *atomic.Int64) *generatedBody {
	g := &generatedBody{
		prefix: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"huge","annotations":{"a":"`,
		suffix: `"}},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`,
		sent:   sent,
	}
	g.fill = size - int64(len(g.prefix)+len(g.suffix))
	return g
}

func (g *generatedBody) size() int64 { return int64(len(g.prefix)) + g.fill + int64(len(g.suffix)) }

func (g *generatedBody) Read(p []byte) (int, error) {
	total := g.size()
	if g.pos >= total {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && g.pos < total {
		switch {
		case g.pos < int64(len(g.prefix)):
			c := copy(p[n:], g.prefix[g.pos:])
			n, g.pos = n+c, g.pos+int64(c)
		case g.pos < int64(len(g.prefix))+g.fill:
			end := min(int64(len(p)-n), int64(len(g.prefix))+g.fill-g.pos)
			for i := int64(0); i < end; i++ {
				p[n+int(i)] = 'x'
			}
			n, g.pos = n+int(end), g.pos+end
		default:
			off := g.pos - int64(len(g.prefix)) - g.fill
			c := copy(p[n:], g.suffix[off:])
			n, g.pos = n+c, g.pos+int64(c)
		}
	}
	if g.sent != nil {
		g.sent.Add(int64(n))
	}
	return n, nil
}

// TestRESTRequestBodyLimit sends several 100 MB bodies at once, with a Content-Length and
// chunked, to every operation that reads a body: each is refused with 413 after at most the
// limit is read, nothing is stored, and the process's heap stays small.
func TestRESTRequestBodyLimit(t *testing.T) {
	env := testenv.Start(t)
	js := env.JetStream(t)
	c := rawClient()
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: []byte(podJSON("web", nil))}); r.code != 201 {
		t.Fatalf("create: %s", r)
	}
	before := settled(t, env, js)

	const bodySize = 100 << 20
	targets := []struct{ method, target string }{
		{"POST", podsPath},
		{"PUT", podsPath + "/web"},
		{"PUT", podsPath + "/web/status"},
		{"POST", podsPath + "/web/binding"},
		{"DELETE", podsPath + "/web"},
	}
	heapBefore := heapAfterGC()
	peak := startHeapPeak()
	var wg sync.WaitGroup
	type result struct {
		what string
		resp response
		err  error
		sent int64
	}
	results := make(chan result, 2*len(targets))
	for _, tg := range targets {
		for _, chunked := range []bool{false, true} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sent := new(atomic.Int64)
				g := newGeneratedBody(bodySize, sent)
				rq := rawRequest{method: tg.method, target: tg.target, bodyReader: g, length: g.size()}
				what := fmt.Sprintf("%s %s with Content-Length %d", tg.method, tg.target, g.size())
				if chunked {
					rq.length = -1
					what = fmt.Sprintf("%s %s chunked", tg.method, tg.target)
				} else {
					rq.expectContinue = true
				}
				resp, err := send(t, c, env.HTTPURL, rq)
				results <- result{what: what, resp: resp, err: err, sent: sent.Load()}
			}()
		}
	}
	wg.Wait()
	close(results)
	peakHeap := peak.Stop()
	heapAfter := heapAfterGC()

	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.what, r.err)
			continue
		}
		checkStatus(t, r.what, r.resp, http.StatusRequestEntityTooLarge)
		if r.resp.status["reason"] != "RequestEntityTooLarge" {
			t.Errorf("%s: reason %v, want RequestEntityTooLarge", r.what, r.resp.status["reason"])
		}
		// With a Content-Length above the limit the server answers before reading: the
		// client, waiting for 100-continue, never sends a byte of the body.
		if strings.Contains(r.what, "Content-Length") && r.sent != 0 {
			t.Errorf("%s: the server asked for the body and the client sent %d bytes of it", r.what, r.sent)
		}
	}
	t.Logf("heap: %d MiB before, peak %d MiB during %d concurrent 100 MiB bodies, %d MiB after GC",
		heapBefore>>20, peakHeap>>20, 2*len(targets), heapAfter>>20)
	// Reading every body up to the limit would hold 10 x 3 MiB at once; reading them whole,
	// 1000 MiB.
	const maxGrowth = 96 << 20
	if peakHeap > heapBefore+maxGrowth {
		t.Errorf("heap peaked at %d MiB, %d MiB above the %d MiB before: bodies are read beyond the limit",
			peakHeap>>20, (peakHeap-heapBefore)>>20, heapBefore>>20)
	}
	if heapAfter > heapBefore+16<<20 {
		t.Errorf("heap after GC is %d MiB, %d MiB above before", heapAfter>>20, (heapAfter-heapBefore)>>20)
	}
	checkNothingChanged(t, env, js, before)

	// The limit is on the body, not on what fits: a small pod padded with whitespace to just
	// under the limit is read and created, one byte over is refused.
	pod := podJSON("padded", nil)
	under := pod + strings.Repeat(" ", limits.MaxRequestBodyBytes-len(pod))
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: []byte(under)}); r.code != 201 {
		t.Errorf("a body of exactly the limit: %s; want 201", r)
	}
	over := []byte(under + " ")
	for _, chunked := range []bool{false, true} {
		rq := rawRequest{method: "POST", target: podsPath, bodyReader: bytes.NewReader(over), length: int64(len(over))}
		if chunked {
			rq.length = -1
		}
		checkStatus(t, fmt.Sprintf("limit+1 bytes (chunked %v)", chunked), mustSend(t, c, env.HTTPURL, rq), 413)
	}
}

// TestGRPCMessageLimit: the gRPC API takes messages up to the same limit; above it the call is
// ResourceExhausted, which clients read as 413.
func TestGRPCMessageLimit(t *testing.T) {
	env := testenv.Start(t)
	big := &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: "big", Namespace: "default",
			Annotations: map[string]string{"a": strings.Repeat("x", limits.MaxRequestBodyBytes)}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	_, err := env.Client.Create(context.Background(), big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("gRPC create of a %d byte pod: %v; want ResourceExhausted", limits.MaxRequestBodyBytes, err)
	}
	se := apierrors.FromError(err)
	if se.Status.GetCode() != 413 || se.Status.GetReason() != apierrors.ReasonRequestEntityTooLarge {
		t.Errorf("the client reads %v; want 413 RequestEntityTooLarge", se.Status)
	}
	if _, err := env.Client.Get(context.Background(), mustKind(t, env, &corev1.Pod{}), "default", "big"); !apierrors.IsNotFound(err) {
		t.Errorf("the refused pod exists: %v", err)
	}
}

// TestRESTPathsAreNeverCleaned: a path with empty, "." or ".." segments is 404 for every
// method and never a redirect to the cleaned path (which names another resource: DELETE
// namespaces//pods would become a delete of the namespace "pods").
func TestRESTPathsAreNeverCleaned(t *testing.T) {
	env := testenv.Start(t)
	js := env.JetStream(t)
	c := rawClient()
	setup := []rawRequest{
		{method: "POST", target: "/api/v1/namespaces", body: []byte(`{"metadata":{"name":"pods"}}`)},
		{method: "POST", target: "/api/v1/namespaces/pods/pods", body: []byte(podJSON("victim", nil))},
		{method: "POST", target: podsPath, body: []byte(podJSON("web", nil))},
	}
	for _, rq := range setup {
		if r := mustSend(t, c, env.HTTPURL, rq); r.code != 201 {
			t.Fatalf("setup %s %s: %s", rq.method, rq.target, r)
		}
	}
	before := settled(t, env, js)

	paths := []string{
		"/api/v1/namespaces//pods",
		"/api/v1/namespaces//pods/",
		"/api/v1//namespaces/pods",
		"//api/v1/namespaces/pods",
		"/api/v1/namespaces/pods/",
		"/api/v1/namespaces/default/pods/",
		"/api/v1/namespaces/default/pods//web",
		"/api/v1/namespaces/default/pods/web/",
		"/api/v1/namespaces/default/pods/web//status",
		"/api/v1/namespaces/default/pods/web/status/",
		"/api/v1/namespaces/default/pods/web/binding/",
		"/api/v1/namespaces/default/pods/./web",
		"/api/v1/namespaces/default/./pods/web",
		"/api/v1/namespaces/default/pods/../pods/web",
		"/api/v1/namespaces/x/../pods",
		"/api/v1/namespaces/x/../pods/pods/victim",
		"/api/v1/namespaces/%2e%2e/pods",
		"/api/v1/namespaces/default/pods/%2E",
		"/api/v1/namespaces/default/pods/%2e%2E",
		"/api/v1/namespaces/default/pods/web/%2e%2e",
		"/api/v1/nodes/",
		"/api/v1/namespaces/",
		"/apis/apps/v1/namespaces//deployments",
		"/apis/apps/v1/namespaces/default/deployments/",
		"/api//v1/pods",
		"/healthz/",
		"//healthz",
		"/./healthz",
	}
	for _, p := range paths {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			rq := rawRequest{method: m, target: p}
			if m != "GET" && m != "DELETE" {
				rq.body = []byte(podJSON("web", nil))
			}
			resp := mustSend(t, c, env.HTTPURL, rq)
			if loc := resp.header.Get("Location"); loc != "" || (resp.code >= 300 && resp.code < 400) {
				t.Errorf("%s %s: redirected (%d) to %q", m, p, resp.code, loc)
			}
			checkStatus(t, m+" "+p, resp, http.StatusNotFound)
		}
	}
	// A client that follows redirects gets the same 404s.
	resp, err := http.DefaultClient.Do(mustRequest(t, "DELETE", env.HTTPURL+"/api/v1/namespaces//pods"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE /api/v1/namespaces//pods, following redirects: %d; want 404", resp.StatusCode)
	}
	for _, p := range []string{"/api/v1/namespaces/pods", "/api/v1/namespaces/pods/pods/victim", podsPath + "/web"} {
		if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "GET", target: p}); r.code != 200 {
			t.Errorf("GET %s after the hostile paths: %s", p, r)
		}
	}
	checkNothingChanged(t, env, js, before)
}

// TestRESTNamesMayNotContainSlashOrPercent: an encoded '/' in a name never reaches another
// route (pods/web%2Fstatus is not the status subresource); Kubernetes answers 400.
func TestRESTNamesMayNotContainSlashOrPercent(t *testing.T) {
	env := testenv.Start(t)
	js := env.JetStream(t)
	c := rawClient()
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: []byte(podJSON("web", nil))}); r.code != 201 {
		t.Fatalf("create: %s", r)
	}
	before := settled(t, env, js)
	status := strings.Replace(podJSON("web", nil), `"metadata":{`, `"status":{"phase":"Failed"},"metadata":{`, 1)
	cases := []struct {
		method, target, body, message string
	}{
		{"PUT", podsPath + "/web%2Fstatus", status, `Name parameter invalid: "web/status": may not contain '/'`},
		{"PUT", podsPath + "/web%2fstatus", status, `may not contain '/'`},
		{"GET", podsPath + "/web%2Fstatus", "", `may not contain '/'`},
		{"DELETE", podsPath + "/web%2Fstatus", "", `may not contain '/'`},
		{"POST", podsPath + "/web%2Fbinding", `{"target":{"name":"n1"}}`, `may not contain '/'`},
		{"DELETE", podsPath + "/web%2F..%2F..%2Fnamespaces%2Fdefault", "", `may not contain '/'`},
		{"GET", podsPath + "/web%25", "", `Name parameter invalid: "web%": may not contain '%'`},
		{"DELETE", podsPath + "/web%252Fstatus", "", `may not contain '%'`},
		{"GET", "/api/v1/namespaces/def%2Fault/pods", "", `Namespace parameter invalid: "def/ault": may not contain '/'`},
		{"POST", "/api/v1/namespaces/default%2Fpods/pods", podJSON("x", nil), `may not contain '/'`},
		{"DELETE", "/api/v1/namespaces/default%2Fpods", "", `Name parameter invalid: "default/pods"`},
		{"PUT", "/api/v1/namespaces/default%2Fstatus", `{"metadata":{"name":"default"}}`, `may not contain '/'`},
	}
	for _, tc := range cases {
		rq := rawRequest{method: tc.method, target: tc.target}
		if tc.body != "" {
			rq.body = []byte(tc.body)
		}
		resp := mustSend(t, c, env.HTTPURL, rq)
		checkStatus(t, tc.method+" "+tc.target, resp, http.StatusBadRequest)
		if msg, _ := resp.status["message"].(string); !strings.Contains(msg, tc.message) {
			t.Errorf("%s %s: message %q; want it to contain %q", tc.method, tc.target, msg, tc.message)
		}
	}
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "GET", target: podsPath + "/web"}); r.code != 200 ||
		dig(r.status, "status", "phase") != "Pending" {
		t.Errorf("the pod after the hostile names: %s", r)
	}
	checkNothingChanged(t, env, js, before)
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func mustKind(t *testing.T, env *testenv.Env, obj scheme.Object) *scheme.Kind {
	t.Helper()
	k, err := env.APIServer.Registry().Scheme().ForMessage(obj)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRESTDecodingRefusesGarbage: a body is one JSON object whose timestamps are times; the
// rest is 400 and stores nothing, on create and on update.
func TestRESTDecodingRefusesGarbage(t *testing.T) {
	env := testenv.Start(t)
	js := env.JetStream(t)
	c := rawClient()
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: []byte(podJSON("web", nil))}); r.code != 201 {
		t.Fatalf("create: %s", r)
	}
	before := settled(t, env, js)
	pod := podJSON("new", nil)
	web := podJSON("web", map[string]string{"changed": "yes"})
	withMeta := func(body, field string) string {
		return strings.Replace(body, `"metadata":{`, `"metadata":{`+field+`,`, 1)
	}
	cases := []struct {
		name, body, message string
	}{
		{"trailing garbage", pod + "garbage", "after top-level value"},
		{"trailing brace", pod + "}", "after top-level value"},
		{"two objects", pod + pod, "after top-level value"},
		{"two objects on lines", pod + "\n" + podJSON("other", nil), "after top-level value"},
		{"an array of objects", "[" + pod + "]", "expected a JSON object"},
		{"creationTimestamp yesterday", withMeta(pod, `"creationTimestamp":"yesterday"`), `metadata.creationTimestamp: cannot parse "yesterday"`},
		{"deletionTimestamp a date", withMeta(pod, `"deletionTimestamp":"2024-05-01"`), "metadata.deletionTimestamp: cannot parse"},
		{"startTime a number string", strings.Replace(pod, `"spec":`, `"status":{"startTime":"1714564800"},"spec":`, 1), "status.startTime: cannot parse"},
		{"condition time", strings.Replace(pod, `"spec":`, `"status":{"conditions":[{"type":"Ready","status":"True","lastTransitionTime":"now"}]},"spec":`, 1),
			"status.conditions[0].lastTransitionTime: cannot parse"},
	}
	for _, tc := range cases {
		for _, rq := range []rawRequest{
			{method: "POST", target: podsPath, body: []byte(tc.body)},
			{method: "PUT", target: podsPath + "/web", body: []byte(strings.ReplaceAll(tc.body, pod, web))},
		} {
			what := tc.name + ": " + rq.method
			resp := mustSend(t, c, env.HTTPURL, rq)
			checkStatus(t, what, resp, http.StatusBadRequest)
			if msg, _ := resp.status["message"].(string); !strings.Contains(msg, tc.message) {
				t.Errorf("%s: message %q; want it to contain %q", what, msg, tc.message)
			}
		}
	}
	checkNothingChanged(t, env, js, before)
}

// TestRESTFieldValidation: unknown and duplicate fields are warned about by default (one
// Warning header each, the write succeeds), refused under fieldValidation=Strict and dropped
// silently under Ignore, as in Kubernetes.
func TestRESTFieldValidation(t *testing.T) {
	env := testenv.Start(t)
	c := rawClient()
	body := func(name string) []byte {
		return []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"labels":{"a":"1","a":"2"}},`+
			`"spec":{"foo":1,"containers":[{"name":"c","image":"nginx","bogus":{"x":[1,2]}}],"restartPolicy":"Always","restart_policy":"Never"},"extra\n\u0000é":true}`, name))
	}
	wantWarnings := []string{
		`299 - "duplicate field \"metadata.labels[a]\""`,
		`299 - "unknown field \"spec.foo\""`,
		`299 - "unknown field \"spec.containers[0].bogus\""`,
		`299 - "duplicate field \"spec.restartPolicy\""`,
		`299 - "unknown field \"extra\\n\\x00\u00e9\""`,
	}
	resp := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: body("warned")})
	if resp.code != 201 {
		t.Fatalf("default (Warn): %s; want 201", resp)
	}
	if got := resp.header.Values("Warning"); strings.Join(got, "\n") != strings.Join(wantWarnings, "\n") {
		t.Errorf("Warning headers:\n got %q\nwant %q", got, wantWarnings)
	}
	if dig(resp.status, "metadata", "labels", "a") != "2" || dig(resp.status, "spec", "restartPolicy") != "Never" {
		t.Errorf("the last of duplicate fields should win: %s", resp)
	}
	resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath + "?fieldValidation=Warn", body: body("warned-2")})
	if resp.code != 201 || len(resp.header.Values("Warning")) != len(wantWarnings) {
		t.Errorf("fieldValidation=Warn: %s, warnings %q", resp, resp.header.Values("Warning"))
	}

	resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath + "?fieldValidation=Ignore", body: body("ignored")})
	if resp.code != 201 || len(resp.header.Values("Warning")) != 0 {
		t.Errorf("fieldValidation=Ignore: %s, warnings %q; want 201 without warnings", resp, resp.header.Values("Warning"))
	}

	resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath + "?fieldValidation=Strict", body: body("strict")})
	checkStatus(t, "fieldValidation=Strict", resp, http.StatusBadRequest)
	wantMsg := `strict decoding error: duplicate field "metadata.labels[a]", unknown field "spec.foo", ` +
		`unknown field "spec.containers[0].bogus", duplicate field "spec.restartPolicy", unknown field "extra\n\x00é"`
	if resp.status["message"] != wantMsg {
		t.Errorf("Strict message:\n got %q\nwant %q", resp.status["message"], wantMsg)
	}
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "GET", target: podsPath + "/strict"}); r.code != 404 {
		t.Errorf("the strictly refused pod was stored: %s", r)
	}
	// Strict on update refuses too and leaves the object as it was; a clean body passes.
	resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "PUT", target: podsPath + "/ignored?fieldValidation=Strict", body: body("ignored")})
	checkStatus(t, "Strict update", resp, http.StatusBadRequest)
	resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath + "?fieldValidation=Strict", body: []byte(podJSON("clean", nil))})
	if resp.code != 201 || len(resp.header.Values("Warning")) != 0 {
		t.Errorf("Strict with a clean body: %s", resp)
	}
	// The first of repeated fieldValidation parameters counts; a bad value is a 422 naming it
	// (Kubernetes' invalid CreateOptions).
	resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath + "?fieldValidation=Strict&fieldValidation=Ignore", body: body("first")})
	checkStatus(t, "Strict then Ignore", resp, http.StatusBadRequest)
	for _, v := range []string{"strict", "Bogus", "true"} {
		resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath + "?fieldValidation=" + v, body: []byte(podJSON("v", nil))})
		checkStatus(t, "fieldValidation="+v, resp, http.StatusUnprocessableEntity)
		if f := causeField(resp); f != "fieldValidation" {
			t.Errorf("fieldValidation=%s: cause field %q", v, f)
		}
	}
	// Many unknown fields make bounded headers.
	var many strings.Builder
	many.WriteString(`{"metadata":{"name":"many"},"spec":{"containers":[{"name":"c","image":"nginx"}]`)
	for i := 0; i < 5000; i++ {
		fmt.Fprintf(&many, `,"unknown%d%s":1`, i, strings.Repeat("x", 100))
	}
	many.WriteString("}}")
	resp = mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: []byte(many.String())})
	total := 0
	for _, w := range resp.header.Values("Warning") {
		total += len(w)
	}
	if resp.code != 201 || total > 16<<10 || total == 0 {
		t.Errorf("5000 unknown fields: %d with %d bytes of warnings; want 201 with some, at most 16 KiB", resp.code, total)
	}
}

// TestRESTQueryParameters: Kubernetes' parameter names only, the first of repeated ones,
// syntactic checks answered 400 with the parameter as the cause, and parameters that name no
// field of the request message never cause an error.
func TestRESTQueryParameters(t *testing.T) {
	env := testenv.Start(t)
	js := env.JetStream(t)
	c := rawClient()
	for i, app := range []string{"web", "web", "db"} {
		if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath,
			body: []byte(podJSON(fmt.Sprintf("p%d", i), map[string]string{"app": app}))}); r.code != 201 {
			t.Fatalf("create: %s", r)
		}
	}
	before := settled(t, env, js)
	items := func(target string) int {
		t.Helper()
		r := mustSend(t, c, env.HTTPURL, rawRequest{method: "GET", target: target})
		if r.code != 200 {
			t.Errorf("GET %s: %s", target, r)
			return -1
		}
		return len(asSlice(r.status["items"]))
	}
	counts := []struct {
		target string
		want   int
	}{
		{podsPath + "?labelSelector=app%3Dweb&labelSelector=app%3Ddb", 2},
		{podsPath + "?labelSelector=app%3Ddb&labelSelector=app%3D%3D%3D", 1},
		{podsPath + "?label_selector=app%3Ddb", 3},
		{podsPath + "?labelSelector=app%3Ddb&label_selector=app%3Dweb", 1},
		{podsPath + "?limit=1&limit=100", 1},
		{podsPath + "?limit=&labelSelector=", 3},
		{podsPath + "?LabelSelector=app%3Ddb&labelselector=app%3Ddb", 3},
		{podsPath + "?field_selector=nonsense&fieldSelector=status.phase%3DPending", 3},
		{podsPath + "?namespace=kube-system&name=x&metadata.name=y&pod.metadata.name=z&limit.x=1&labels%5Ba%5D=b", 3},
		{podsPath + "?a=%zz&%zz=1&;=;&pretty=true&timeoutSeconds=5&resourceVersion=0&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", 3},
		{podsPath + "?resourceVersion=0&watch=false&watch=true", 3},
		{podsPath + "?watch=0", 3},
	}
	for _, tc := range counts {
		if n := items(tc.target); n != tc.want {
			t.Errorf("GET %s: %d items; want %d", tc.target, n, tc.want)
		}
	}

	for _, tc := range badParameters("p0") {
		resp := mustSend(t, c, env.HTTPURL, tc.request)
		what := tc.request.method + " " + tc.request.target
		checkStatus(t, what, resp, tc.code)
		if f := causeField(resp); f != tc.field {
			t.Errorf("%s: cause field %q; want %q (%s)", what, f, tc.field, resp)
		}
	}
	// Parameters an operation does not take are ignored, whatever their value.
	for _, target := range []string{podsPath + "/p0?limit=abc&watch=false&labelSelector=%3D%3D", podsPath + "/p0?dryRun=Maybe&gracePeriodSeconds=x"} {
		if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "GET", target: target}); r.code != 200 {
			t.Errorf("GET %s: %s; want 200", target, r)
		}
	}
	checkNothingChanged(t, env, js, before)
}

// TestRESTStatusCodesLikeKubernetes: the codes Kubernetes answers for the same careless input.
func TestRESTStatusCodesLikeKubernetes(t *testing.T) {
	env := testenv.Start(t)
	c := rawClient()
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: []byte(podJSON("web", nil))}); r.code != 201 {
		t.Fatalf("create: %s", r)
	}
	for _, rq := range []rawRequest{
		{method: "POST", target: podsPath},
		{method: "POST", target: podsPath, body: []byte{}},
		{method: "POST", target: podsPath, body: []byte(" \n\t ")},
		{method: "PUT", target: podsPath + "/web", body: []byte{}},
		{method: "PUT", target: podsPath + "/web/status"},
		{method: "POST", target: podsPath + "/web/binding", body: []byte("")},
		{method: "POST", target: podsPath, body: []byte("null")},
		{method: "POST", target: podsPath, body: []byte(`"pod"`)},
	} {
		checkStatus(t, fmt.Sprintf("%s %s with body %q", rq.method, rq.target, rq.body), mustSend(t, c, env.HTTPURL, rq), http.StatusBadRequest)
	}
	for _, ct := range []string{"text/plain", "application/yaml", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
		"application/xml", "application/json-patch+json", "json", ";;;", "application/json/x"} {
		for _, rq := range []rawRequest{
			{method: "POST", target: podsPath, contentType: ct, body: []byte(podJSON("typed", nil))},
			{method: "PUT", target: podsPath + "/web", contentType: ct, body: []byte(podJSON("web", map[string]string{"a": "b"}))},
			{method: "POST", target: podsPath, contentType: ct},
			{method: "DELETE", target: podsPath + "/web", contentType: ct, body: []byte(`{"kind":"DeleteOptions"}`)},
		} {
			resp := mustSend(t, c, env.HTTPURL, rq)
			checkStatus(t, fmt.Sprintf("%s %s as %q", rq.method, rq.target, ct), resp, http.StatusUnsupportedMediaType)
			if resp.status["reason"] != "UnsupportedMediaType" {
				t.Errorf("%s as %q: reason %v", rq.method, ct, resp.status["reason"])
			}
		}
	}
	// JSON with parameters, any case, or no Content-Type at all (Kubernetes reads it as JSON).
	for i, ct := range []string{"application/json; charset=utf-8", "Application/JSON", noContentType} {
		name := fmt.Sprintf("json-%d", i)
		if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, contentType: ct, body: []byte(podJSON(name, nil))}); r.code != 201 {
			t.Errorf("create as %q: %s", ct, r)
		}
	}
	// A DELETE without a body needs no Content-Type, whatever the header says.
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "DELETE", target: podsPath + "/json-0", contentType: "text/plain"}); r.code != 200 {
		t.Errorf("DELETE without body as text/plain: %s", r)
	}
	// Quantities may be JSON numbers.
	numbers := strings.Replace(podJSON("numbers", nil), `"requests":{"cpu":"100m","memory":"64Mi"}`,
		`"requests":{"cpu":1,"memory":67108864},"limits":{"cpu":2.5,"memory":1e9}`, 1)
	resp := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath, body: []byte(numbers)})
	if resp.code != 201 {
		t.Fatalf(`"cpu": 1: %s; want 201`, resp)
	}
	res, _ := dig(asSlice(dig(resp.status, "spec", "containers"))[0].(map[string]any), "resources").(map[string]any)
	if dig(res, "requests", "cpu") != "1" || dig(res, "requests", "memory") != "67108864" || dig(res, "limits", "cpu") != "2.5" ||
		dig(res, "limits", "memory") != "1e9" {
		t.Errorf("quantities given as numbers came back as %v", res)
	}
	node := `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"},"status":{"capacity":{"cpu":4,"pods":110},"allocatable":{"cpu":3.5}}}`
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: "/api/v1/nodes", body: []byte(node)}); r.code != 201 {
		t.Errorf("node with numeric capacity: %s", r)
	}
	// Numbers are quantities only where quantities go.
	if r := mustSend(t, c, env.HTTPURL, rawRequest{method: "POST", target: podsPath,
		body: []byte(strings.Replace(podJSON("labels", nil), `"labels":null`, `"labels":{"a":1}`, 1))}); r.code != 400 {
		t.Errorf("a number as a label value: %s; want 400", r)
	}
}

// parameterCase is a request with one bad query parameter, and the parameter.
type parameterCase struct {
	request rawRequest
	field   string
	// code is 400 for a value that does not parse, 422 for one outside the option's set
	// (Kubernetes' invalid CreateOptions, UpdateOptions, DeleteOptions or ListOptions).
	code int
}

// badParameters are requests with a bad value for each parameter of docs/rest-params, on the
// operations that take it; pod names an existing pod.
func badParameters(pod string) []parameterCase {
	cases := []struct {
		method, target, field string
	}{
		{"GET", podsPath + "?labelSelector=app+in+()", "labelSelector"},
		{"GET", podsPath + "?labelSelector=app+in+()&watch=true", "labelSelector"},
		{"GET", podsPath + "?fieldSelector=spec.nope%3Dx", "fieldSelector"},
		{"GET", podsPath + "?watch=abc", "watch"},
		{"GET", podsPath + "?watch=yes", "watch"},
		{"GET", podsPath + "?resourceVersion=abc", "resourceVersion"},
		{"GET", podsPath + "?resourceVersion=-1", "resourceVersion"},
		{"GET", podsPath + "?resourceVersion=%2B5", "resourceVersion"},
		{"GET", podsPath + "?resourceVersion=99999999999999999999", "resourceVersion"},
		{"GET", podsPath + "?resourceVersion=abc&watch=true", "resourceVersion"},
		{"GET", podsPath + "/" + pod + "?resourceVersion=abc", "resourceVersion"},
		{"GET", podsPath + "?limit=abc", "limit"},
		{"GET", podsPath + "?limit=-1", "limit"},
		{"GET", podsPath + "?limit=1.5", "limit"},
		{"GET", podsPath + "?limit=99999999999999999999", "limit"},
		{"GET", podsPath + "?timeoutSeconds=-5", "timeoutSeconds"},
		{"GET", podsPath + "?timeoutSeconds=soon&watch=true", "timeoutSeconds"},
		{"GET", podsPath + "?resourceVersionMatch=Newest", "resourceVersionMatch"},
		{"GET", podsPath + "?allowWatchBookmarks=maybe", "allowWatchBookmarks"},
		{"GET", podsPath + "?sendInitialEvents=2", "sendInitialEvents"},
		{"GET", podsPath + "?labelSelector=%zz", "labelSelector"},
		{"POST", podsPath + "?dryRun=Maybe", "dryRun"},
		{"POST", podsPath + "?dryRun=all", "dryRun"},
		{"POST", podsPath + "?dryRun=All&dryRun=Maybe", "dryRun"},
		{"PUT", podsPath + "/" + pod + "?dryRun=true", "dryRun"},
		{"PUT", podsPath + "/" + pod + "/status?dryRun=1", "dryRun"},
		{"DELETE", podsPath + "/" + pod + "?dryRun=Maybe", "dryRun"},
		{"DELETE", podsPath + "/" + pod + "?gracePeriodSeconds=abc", "gracePeriodSeconds"},
		{"DELETE", podsPath + "/" + pod + "?gracePeriodSeconds=1.5", "gracePeriodSeconds"},
		{"DELETE", podsPath + "/" + pod + "?propagationPolicy=Later", "propagationPolicy"},
		{"DELETE", podsPath + "/" + pod + "?orphanDependents=perhaps", "orphanDependents"},
		{"POST", podsPath + "/" + pod + "/binding?dryRun=Maybe", "dryRun"},
		{"POST", podsPath + "?fieldValidation=Loose", "fieldValidation"},
		{"PUT", podsPath + "/" + pod + "?fieldValidation=strict", "fieldValidation"},
	}
	var out []parameterCase
	for _, tc := range cases {
		rq := rawRequest{method: tc.method, target: tc.target}
		switch {
		case strings.HasSuffix(strings.Split(tc.target, "?")[0], "/binding"):
			rq.body = []byte(`{"target":{"kind":"Node","name":"n1"}}`)
		case tc.method == "POST" || tc.method == "PUT":
			rq.body = []byte(podJSON(pod, nil))
		}
		code := http.StatusBadRequest
		switch tc.field {
		case "dryRun", "propagationPolicy", "resourceVersionMatch", "fieldValidation":
			code = http.StatusUnprocessableEntity
		}
		out = append(out, parameterCase{request: rq, field: tc.field, code: code})
	}
	return out
}
