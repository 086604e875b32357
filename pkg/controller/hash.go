package controller

import (
	"encoding/binary"
	"hash/fnv"
	"strconv"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// PodTemplateHashLabel is the label a Deployment puts on its ReplicaSets, their selectors and
// their pods, so that the pods of each revision are told apart.
const PodTemplateHashLabel = "pod-template-hash"

// hashAlphabet is Kubernetes' SafeEncodeString alphabet (no vowels, no look-alikes), so a
// hash never spells a word.
const hashAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// ComputeHash hashes a pod template (FNV-32a over its deterministic protobuf encoding, plus
// the collision count when set) and encodes it as Kubernetes does: each decimal digit of the
// hash mapped into a safe alphabet. Equal templates always hash alike, in every process.
func ComputeHash(tmpl *corev1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tmpl)
	h.Write(b)
	if collisionCount != nil {
		var cc [4]byte
		binary.LittleEndian.PutUint32(cc[:], uint32(*collisionCount))
		h.Write(cc[:])
	}
	digits := strconv.FormatUint(uint64(h.Sum32()), 10)
	out := make([]byte, len(digits))
	for i := range len(digits) {
		out[i] = hashAlphabet[int(digits[i])%len(hashAlphabet)]
	}
	return string(out)
}

// EqualIgnoreHash reports whether two pod templates are the same apart from the
// pod-template-hash label (how a Deployment finds the ReplicaSet of its current template).
func EqualIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = proto.Clone(a).(*corev1.PodTemplateSpec), proto.Clone(b).(*corev1.PodTemplateSpec)
	for _, t := range []*corev1.PodTemplateSpec{a, b} {
		if t.GetMetadata() != nil {
			delete(t.Metadata.Labels, PodTemplateHashLabel)
			if len(t.Metadata.Labels) == 0 {
				t.Metadata.Labels = nil
			}
		}
	}
	return proto.Equal(a, b)
}
