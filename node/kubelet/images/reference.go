// Package images holds the kubelet's image logic that does not depend on a runtime: reference
// normalisation as Kubernetes and Docker do it, the pull policy, pull back-off and image
// garbage collection.
package images

import (
	"fmt"

	"github.com/distribution/reference"
)

// Normalize returns the full form of an image reference: "skiff-demo:v1" is
// "docker.io/library/skiff-demo:v1", "busybox" is "docker.io/library/busybox:latest", and a
// reference with a registry or a digest keeps it.
func Normalize(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// DefaultPullPolicy is Kubernetes' default imagePullPolicy: Always for ":latest" or an
// untagged image (it may change under the same name), IfNotPresent otherwise.
func DefaultPullPolicy(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "IfNotPresent"
	}
	if _, digested := named.(reference.Digested); digested {
		return "IfNotPresent"
	}
	if tagged, ok := named.(reference.Tagged); ok && tagged.Tag() != "latest" {
		return "IfNotPresent"
	}
	return "Always"
}
