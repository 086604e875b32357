package controller

import (
	"time"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// Pod phases and condition values, as Kubernetes spells them.
const (
	PodPending   = "Pending"
	PodRunning   = "Running"
	PodSucceeded = "Succeeded"
	PodFailed    = "Failed"
	PodUnknown   = "Unknown"

	ConditionTrue    = "True"
	ConditionFalse   = "False"
	ConditionUnknown = "Unknown"

	PodReady = "Ready"
)

// IsPodTerminal reports whether the pod has finished (Succeeded or Failed).
func IsPodTerminal(pod *corev1.Pod) bool {
	phase := pod.GetStatus().GetPhase()
	return phase == PodSucceeded || phase == PodFailed
}

// IsPodActive reports whether the pod counts towards its controller's replicas: not finished
// and not being deleted (Kubernetes' FilterActivePods).
func IsPodActive(pod *corev1.Pod) bool {
	return !IsPodTerminal(pod) && pod.GetMetadata().GetDeletionTimestamp() == ""
}

// PodReadyCondition returns the pod's Ready condition, or nil.
func PodReadyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for _, c := range pod.GetStatus().GetConditions() {
		if c.GetType() == PodReady {
			return c
		}
	}
	return nil
}

// IsPodReady reports whether the pod's Ready condition is True.
func IsPodReady(pod *corev1.Pod) bool {
	c := PodReadyCondition(pod)
	return c != nil && c.GetStatus() == ConditionTrue
}

// IsPodAvailable reports whether the pod has been ready for at least minReadySeconds at now
// (Kubernetes' availability: with minReadySeconds 0, ready is available).
func IsPodAvailable(pod *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	c := PodReadyCondition(pod)
	if c == nil || c.GetStatus() != ConditionTrue {
		return false
	}
	if minReadySeconds <= 0 {
		return true
	}
	since, err := ParseTime(c.GetLastTransitionTime())
	if err != nil {
		return false
	}
	return !since.Add(time.Duration(minReadySeconds) * time.Second).After(now)
}

// AvailableAt is when a ready pod becomes available (its Ready transition plus
// minReadySeconds); ok is false for a pod that is not ready.
func AvailableAt(pod *corev1.Pod, minReadySeconds int32) (at time.Time, ok bool) {
	c := PodReadyCondition(pod)
	if c == nil || c.GetStatus() != ConditionTrue {
		return time.Time{}, false
	}
	since, err := ParseTime(c.GetLastTransitionTime())
	if err != nil {
		return time.Time{}, false
	}
	return since.Add(time.Duration(minReadySeconds) * time.Second), true
}

// Timestamp formats t as API objects store times (RFC 3339, UTC, seconds).
func Timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ParseTime reads an API timestamp (RFC 3339, with or without fractional seconds).
func ParseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }
