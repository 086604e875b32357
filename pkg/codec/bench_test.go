package codec

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

func BenchmarkMarshalPod(b *testing.B) {
	pod := examplePod()
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Marshal(pod); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protojson.Marshal(pod); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnmarshalPod(b *testing.B) {
	pod := examplePod()
	ours := mustMarshal(b, pod)
	// protojson reads its own shapes (IntOrString as an object), so each decodes its own output.
	theirs, err := protojson.Marshal(pod)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(ours)))
		for b.Loop() {
			if err := Unmarshal(ours, &corev1.Pod{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(theirs)))
		for b.Loop() {
			if err := protojson.Unmarshal(theirs, &corev1.Pod{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
