package controller

import (
	"testing"
	"time"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestScaledValueRoundsAsKubernetes(t *testing.T) {
	pct := func(s string) *metav1.IntOrString {
		return &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: s}}
	}
	for _, tc := range []struct {
		v       *metav1.IntOrString
		total   int
		roundUp bool
		want    int
	}{
		{pct("25%"), 10, true, 3}, {pct("25%"), 10, false, 2}, {pct("25%"), 4, true, 1}, {pct("25%"), 3, false, 0},
		{pct("100%"), 7, false, 7}, {pct("0%"), 7, true, 0},
		{&metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: 5}}, 3, false, 5}, {nil, 10, true, 0},
	} {
		got, err := ScaledValue(tc.v, tc.total, tc.roundUp)
		if err != nil || got != tc.want {
			t.Errorf("ScaledValue(%v, %d, up=%v) = %d, %v; want %d", tc.v, tc.total, tc.roundUp, got, err, tc.want)
		}
	}
	if _, err := ScaledValue(pct("x%"), 10, true); err == nil {
		t.Error("a malformed percentage was accepted")
	}
}

func TestComputeHash(t *testing.T) {
	tmpl := func(image string, lbl map[string]string) *corev1.PodTemplateSpec {
		return &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbl},
			Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: image}}}}
	}
	a := ComputeHash(tmpl("web:1", map[string]string{"app": "web", "tier": "fe"}), nil)
	// Same template, map built in another order: same hash.
	if b := ComputeHash(tmpl("web:1", map[string]string{"tier": "fe", "app": "web"}), nil); a != b {
		t.Errorf("equal templates hash differently: %s %s", a, b)
	}
	if b := ComputeHash(tmpl("web:2", map[string]string{"app": "web", "tier": "fe"}), nil); a == b {
		t.Errorf("different templates hash alike: %s", a)
	}
	one := int32(1)
	if b := ComputeHash(tmpl("web:1", map[string]string{"app": "web", "tier": "fe"}), &one); a == b {
		t.Errorf("the collision count does not change the hash")
	}
	for _, r := range a {
		if !containsRune(hashAlphabet, r) {
			t.Errorf("hash %q has %q, outside the safe alphabet", a, r)
		}
	}
	withHash := tmpl("web:1", map[string]string{"app": "web", "tier": "fe", PodTemplateHashLabel: a})
	if !EqualIgnoreHash(withHash, tmpl("web:1", map[string]string{"app": "web", "tier": "fe"})) {
		t.Error("EqualIgnoreHash sees the hash label")
	}
	if EqualIgnoreHash(withHash, tmpl("web:2", map[string]string{"app": "web", "tier": "fe"})) {
		t.Error("EqualIgnoreHash ignores the image")
	}
}

func containsRune(s string, r rune) bool {
	for _, c := range s {
		if c == r {
			return true
		}
	}
	return false
}

func TestExpectations(t *testing.T) {
	now := time.Unix(1000, 0)
	e := NewExpectations()
	e.now = func() time.Time { return now }
	if !e.Satisfied("rs") {
		t.Fatal("nothing expected, yet not satisfied")
	}
	e.ExpectCreations("rs", 2)
	e.CreationObserved("rs")
	if e.Satisfied("rs") {
		t.Fatal("satisfied with one of two creations seen")
	}
	e.CreationObserved("rs")
	e.CreationObserved("rs") // more than expected: harmless
	if !e.Satisfied("rs") {
		t.Fatal("not satisfied after both creations")
	}
	e.ExpectDeletions("rs", []string{"ns/a", "ns/b"})
	e.DeletionObserved("rs", "ns/a")
	e.DeletionObserved("rs", "ns/a") // the deletionTimestamp update and the delete event
	if e.Satisfied("rs") {
		t.Fatal("satisfied with ns/b's deletion outstanding")
	}
	now = now.Add(ExpectationsTimeout + time.Second)
	if !e.Satisfied("rs") {
		t.Fatal("expectations never expire")
	}
}

func TestPodAvailability(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 10, 0, time.UTC)
	pod := &corev1.Pod{Status: &corev1.PodStatus{Conditions: []*corev1.PodCondition{{Type: "Ready", Status: "True",
		LastTransitionTime: Timestamp(now.Add(-5 * time.Second))}}}}
	if !IsPodReady(pod) || !IsPodAvailable(pod, 0, now) || !IsPodAvailable(pod, 5, now) || IsPodAvailable(pod, 6, now) {
		t.Error("availability does not follow minReadySeconds")
	}
	pod.Metadata = &metav1.ObjectMeta{DeletionTimestamp: Timestamp(now)}
	if IsPodActive(pod) {
		t.Error("a pod being deleted is active")
	}
}
