package controller_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/labels"
)

// A controller claims from its cache, which is often a little behind the API (a pod's status
// changes all the time): a conflict must not cost an adoption or a release. A ReplicaSet
// that failed to adopt its orphan created a replacement for it instead
// (TestAdoptsMatchingOrphansAndReleasesPodsThatStopMatching failed so in CI).
func TestClaimAdoptsAndReleasesFromStaleCopies(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	ctx := context.Background()
	rsKind, _ := env.Client.Scheme().ForName("replicasets")
	lbls := map[string]string{"app": "web"}
	owner, err := env.Client.Create(ctx, &appsv1.ReplicaSet{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(name string, refs ...*metav1.OwnerReference) scheme.Object {
		p, err := env.Client.Create(ctx, &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels: map[string]string{"app": "web"}, OwnerReferences: refs},
			Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Both copies go stale: the API has a newer version of each.
	touch := func(obj scheme.Object) {
		next := proto.Clone(obj).(scheme.Object)
		next.GetMetadata().Annotations = map[string]string{"touched": "yes"}
		if _, err := env.Client.Update(ctx, next); err != nil {
			t.Fatal(err)
		}
	}
	orphan := pod("orphan")
	ours := pod("leaving", controller.NewControllerRef(rsKind, owner.GetMetadata()))
	ours.GetMetadata().Labels = map[string]string{"app": "elsewhere"} // no longer selected
	touch(orphan)
	touch(ours)

	refs := &controller.RefManager{Client: env.Client, OwnerKind: rsKind, Owner: owner,
		Selector: labels.SelectorFromSet(lbls), CanAdopt: controller.RecheckOwner(env.Client, rsKind, owner)}
	claimed, err := refs.Claim(ctx, []scheme.Object{orphan, ours})
	if err != nil {
		t.Fatalf("claim from stale copies: %v", err)
	}
	if len(claimed) != 1 || claimed[0].GetMetadata().GetName() != "orphan" {
		t.Fatalf("claimed %d objects; want the orphan alone", len(claimed))
	}
	podKind, _ := env.Client.Scheme().ForName("pods")
	got, _ := env.Client.Get(ctx, podKind, "default", "orphan")
	if ref := controller.ControllerOf(got.GetMetadata()); ref.GetUid() != owner.GetMetadata().GetUid() || got.GetMetadata().GetAnnotations()["touched"] != "yes" {
		t.Errorf("orphan in the API: owners %v, annotations %v; want adopted with the newer version's changes kept",
			got.GetMetadata().GetOwnerReferences(), got.GetMetadata().GetAnnotations())
	}
	got, _ = env.Client.Get(ctx, podKind, "default", "leaving")
	if len(got.GetMetadata().GetOwnerReferences()) != 0 {
		t.Errorf("released pod still has owners %v", got.GetMetadata().GetOwnerReferences())
	}
}
