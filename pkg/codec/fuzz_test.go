package codec

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// FuzzDecodeManifests checks that decoding never panics and that whatever decodes survives a
// Marshal/Unmarshal round trip unchanged and without unknown fields. Seeds stay small: the
// fuzzer minimizes every new interesting input, which takes long for large ones.
func FuzzDecodeManifests(f *testing.F) {
	f.Add([]byte(webYAML))
	f.Add(mustMarshal(f, examplePod()))
	f.Add(mustMarshal(f, wantWebService()))
	f.Add([]byte(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","spec":{"ports":[{"targetPort":"x"},{"targetPort":1e2}]}}]}`))
	f.Add([]byte("apiVersion: v1\nkind: Node\nmetadata:\n  name: n\n  generation: \"12\"\nstatus:\n  capacity:\n    cpu: \"4\"\n"))
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: \"a\\u2028<>\", labels: {a: null}}\nspec: {containers: [null, {name: c}]}\n"))
	s := scheme.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := DecodeManifests(data, s)
		if err != nil {
			return
		}
		for _, m := range ms {
			b, err := Marshal(m.Object)
			if err != nil {
				t.Fatalf("Marshal(%v): %v", m.Object, err)
			}
			again := m.Kind.New()
			unknown, err := UnmarshalWithUnknown(b, again)
			if err != nil {
				t.Fatalf("re-decoding %s: %v", b, err)
			}
			if len(unknown) > 0 {
				t.Fatalf("re-decoding %s: unknown fields %q", b, unknown)
			}
			if !proto.Equal(again, m.Object) {
				t.Fatalf("round trip differs:\n got %v\nwant %v\njson %s", again, m.Object, b)
			}
		}
	})
}
