package codec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/limits"
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

	// The generated gateway code decodes into &req.Pod, a **corev1.Pod.
	dec := g.NewDecoder(strings.NewReader(" \n" + string(mustMarshal(t, pod)) + "\n\t "))
	req := &corev1.CreatePodRequest{}
	if err := dec.Decode(&req.Pod); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(req.Pod, pod) {
		t.Errorf("decoded %v, want %v", req.Pod, pod)
	}
	if err := dec.Decode(&req.Pod); !errors.Is(err, io.EOF) {
		t.Errorf("Decode at end = %v, want io.EOF", err)
	}
	for _, empty := range []string{"", " \n\t"} {
		if err := g.NewDecoder(strings.NewReader(empty)).Decode(&corev1.Pod{}); !errors.Is(err, io.EOF) {
			t.Errorf("Decode of empty body %q = %v, want io.EOF", empty, err)
		}
	}
	// A body is one JSON value: Kubernetes refuses whatever follows it.
	for _, body := range []string{
		`{"kind":"Pod"}{"kind":"Pod"}`,
		`{"kind":"Pod"}` + "\n" + `{"kind":"Pod"}`,
		`{"kind":"Pod"} garbage`,
		`{"kind":"Pod"}}`,
		`{"kind":"Pod"},`,
	} {
		if err := g.NewDecoder(strings.NewReader(body)).Decode(&corev1.Pod{}); err == nil ||
			!strings.Contains(err.Error(), "after top-level value") {
			t.Errorf("Decode(%q) = %v, want an error about data after the object", body, err)
		}
	}
	huge := io.MultiReader(strings.NewReader(`{"kind":"`), strings.NewReader(strings.Repeat("x", limits.MaxRequestBodyBytes)))
	if err := g.NewDecoder(huge).Decode(&corev1.Pod{}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Decode of a body above the limit = %v, want a size error", err)
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

// testBody is a request body with decoding options, as the REST front makes them.
type testBody struct {
	io.Reader
	validation FieldValidation
	warnings   []string
}

func (b *testBody) FieldValidation() FieldValidation { return b.validation }
func (b *testBody) Warn(text string)                 { b.warnings = append(b.warnings, text) }

func TestGatewayDecoderFieldValidation(t *testing.T) {
	const body = `{"kind":"Pod","metadata":{"name":"a","name":"b","labels":{"x":"1","x":"2"}},` +
		`"spec":{"foo":1,"containers":[{"name":"c","bar":{"deep":[1]}}],"restartPolicy":"Always","restart_policy":"Never"}}`
	wantIssues := []string{
		`duplicate field "metadata.name"`,
		`duplicate field "metadata.labels[x]"`,
		`unknown field "spec.foo"`,
		`unknown field "spec.containers[0].bar"`,
		`duplicate field "spec.restartPolicy"`,
	}
	decode := func(v FieldValidation) (*testBody, *corev1.Pod, error) {
		b := &testBody{Reader: strings.NewReader(body), validation: v}
		var pod *corev1.Pod
		err := GatewayMarshaler{}.NewDecoder(b).Decode(&pod)
		return b, pod, err
	}

	b, pod, err := decode(FieldValidationWarn)
	if err != nil {
		t.Fatalf("Warn: %v", err)
	}
	if !slices.Equal(b.warnings, wantIssues) {
		t.Errorf("Warn: warnings\n got %q\nwant %q", b.warnings, wantIssues)
	}
	// The last of duplicates wins, as encoding/json does.
	if pod.GetMetadata().GetName() != "b" || pod.GetMetadata().GetLabels()["x"] != "2" || pod.GetSpec().GetRestartPolicy() != "Never" {
		t.Errorf("Warn: decoded %v", pod)
	}

	b, pod, err = decode(FieldValidationIgnore)
	if err != nil || len(b.warnings) != 0 || pod.GetMetadata().GetName() != "b" {
		t.Errorf("Ignore: err %v, warnings %q, pod %v", err, b.warnings, pod)
	}

	b, _, err = decode(FieldValidationStrict)
	want := "strict decoding error: " + strings.Join(wantIssues, ", ")
	if err == nil || err.Error() != want || len(b.warnings) != 0 {
		t.Errorf("Strict: err %v, warnings %q\nwant err %s", err, b.warnings, want)
	}

	// Without options (or without issues) nothing is reported.
	var plain *corev1.Pod
	if err := (GatewayMarshaler{}).NewDecoder(strings.NewReader(body)).Decode(&plain); err != nil || plain.GetMetadata().GetName() != "b" {
		t.Errorf("no options: %v %v", plain, err)
	}
	clean := &testBody{Reader: strings.NewReader(`{"metadata":{"name":"a"}}`), validation: FieldValidationStrict}
	if err := (GatewayMarshaler{}).NewDecoder(clean).Decode(&corev1.Pod{}); err != nil || len(clean.warnings) != 0 {
		t.Errorf("Strict, clean body: %v %q", err, clean.warnings)
	}
}
