// Package controller holds what Skiff's controllers share, as Kubernetes keeps it in
// pkg/controller: pod readiness and availability, owner references and claiming objects by
// selector (adoption and release), expectations that stop a controller from acting twice on
// changes it has not seen yet, the pod-template hash, and Kubernetes' rounding of
// percentages.
package controller
