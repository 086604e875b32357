package codec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

func TestGatewayMarshaler(t *testing.T) {
	var g GatewayMarshaler
	pod := examplePod()

	got, err := g.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustMarshal(t, pod); !bytes.Equal(got, want) {
		t.Errorf("Marshal(pod) = %s, want %s", got, want)
	}

	got, err = g.Marshal(map[string]any{"b": 1, "a": "x"})
	if err != nil || string(got) != `{"a":"x","b":1}` {
		t.Errorf("Marshal(map) = %s, %v", got, err)
	}

	// The gateway's default error handler writes a google.rpc.Status.
	got, err = g.Marshal(status.New(codes.NotFound, `pods "a" not found`).Proto())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(got, &st); err != nil || st.Code != 5 || st.Message != `pods "a" not found` {
		t.Errorf("Marshal(rpc status) = %s (%v)", got, err)
	}

	if ct := g.ContentType(pod); ct != "application/json" {
		t.Errorf("ContentType = %q", ct)
	}

	// Unmarshal into a message, a pointer to a nil message pointer, and a plain value.
	data := mustMarshal(t, pod)
	into := &corev1.Pod{}
	if err := g.Unmarshal(data, into); err != nil || !proto.Equal(into, pod) {
		t.Errorf("Unmarshal(*Pod) = %v, %v", into, err)
	}
	var pp *corev1.Pod
	if err := g.Unmarshal(data, &pp); err != nil || !proto.Equal(pp, pod) {
		t.Errorf("Unmarshal(**Pod) = %v, %v", pp, err)
	}
	var m map[string]any
	if err := g.Unmarshal([]byte(`{"a":1}`), &m); err != nil || m["a"] != 1.0 {
		t.Errorf("Unmarshal(map) = %v, %v", m, err)
	}
	if err := g.Unmarshal([]byte(`{"spec":{"containers":1}}`), &corev1.Pod{}); err == nil ||
		err.Error() != "spec.containers: cannot unmarshal 1 into array" {
		t.Errorf("Unmarshal(bad pod) error = %v", err)
	}
}

func TestGatewayDecoder(t *testing.T) {
	var g GatewayMarshaler
	pod := examplePod()
	body := string(mustMarshal(t, pod)) + "\n" + `{"kind":"Pod"}`

	// The generated gateway code decodes into &req.Pod, a **corev1.Pod.
	dec := g.NewDecoder(strings.NewReader(body))
	req := &corev1.CreatePodRequest{}
	if err := dec.Decode(&req.Pod); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(req.Pod, pod) {
		t.Errorf("decoded %v, want %v", req.Pod, pod)
	}
	second := &corev1.Pod{}
	if err := dec.Decode(second); err != nil || second.GetKind() != "Pod" {
		t.Errorf("second Decode = %v, %v", second, err)
	}
	if err := dec.Decode(&req.Pod); !errors.Is(err, io.EOF) {
		t.Errorf("Decode at end = %v, want io.EOF", err)
	}
	if err := g.NewDecoder(strings.NewReader("")).Decode(&corev1.Pod{}); !errors.Is(err, io.EOF) {
		t.Errorf("Decode of empty body = %v, want io.EOF", err)
	}
	var names []string
	if err := g.NewDecoder(strings.NewReader(`["a","b"]`)).Decode(&names); err != nil || len(names) != 2 {
		t.Errorf("Decode([]string) = %v, %v", names, err)
	}

	var out bytes.Buffer
	if err := g.NewEncoder(&out).Encode(&corev1.Pod{Kind: "Pod"}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "{\"kind\":\"Pod\"}\n" {
		t.Errorf("Encode wrote %q", out.String())
	}
}

// echoPods is a PodAPI server whose Create returns the pod it was given.
type echoPods struct {
	corev1.UnimplementedPodAPIServer
}

func (echoPods) Create(_ context.Context, req *corev1.CreatePodRequest) (*corev1.Pod, error) {
	if req.GetPod().GetMetadata().GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name required")
	}
	p := proto.Clone(req.GetPod()).(*corev1.Pod)
	p.Metadata.Namespace = req.GetNamespace()
	p.Metadata.Generation = 1
	return p, nil
}

// TestGatewayServeMux runs the generated gateway handlers with the marshaler installed.
func TestGatewayServeMux(t *testing.T) {
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, GatewayMarshaler{}))
	if err := corev1.RegisterPodAPIHandlerServer(context.Background(), mux, echoPods{}); err != nil {
		t.Fatal(err)
	}
	body := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"nginx",` +
		`"securityContext":{},"livenessProbe":{"tcpSocket":{"port":80}},"readinessProbe":{"httpGet":{"port":"http"}}}],` +
		`"terminationGracePeriodSeconds":0}}`
	req := httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/ns1/pods", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	want := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"ns1","generation":1},"spec":{"containers":[{"name":"c","image":"nginx",` +
		`"livenessProbe":{"tcpSocket":{"port":80}},"readinessProbe":{"httpGet":{"port":"http"}}}],"terminationGracePeriodSeconds":0}}`
	if got := rec.Body.String(); got != want {
		t.Errorf("response:\n got %s\nwant %s", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}

	// A body the codec rejects is a 400 naming the field.
	req = httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/ns1/pods", strings.NewReader(`{"metadata":{"name":"a","labels":{"v":1}}}`))
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "metadata.labels[v]: cannot unmarshal 1 into string") {
		t.Errorf("bad body: status %d: %s", rec.Code, rec.Body)
	}

	// Errors from the server go through the default error handler.
	req = httptest.NewRequest(http.MethodPost, "/api/v1/namespaces/ns1/pods", strings.NewReader(`{"metadata":{}}`))
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	var st struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusBadRequest || st.Message != "name required" {
		t.Errorf("server error: status %d: %s", rec.Code, rec.Body)
	}
}
