package garbagecollector

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv/cluster"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
)

// A cache that still shows a dependent's reference to an owner that orphaned it and is gone
// must not get the dependent deleted: the informers of different kinds are not ordered, so
// an owner's delete can reach the collector before the update that removed the reference
// (TestOrphanDeletionKeepsDependentsWithoutTheOwnerReference lost a pod to it about 1 run in
// 6). The collector is handed such a stale copy directly, which makes the race certain.
func TestStaleDependentWithAGoneOwnerIsNotDeleted(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true, NoKubelet: true})
	ctx := context.Background()
	g, err := New(Config{Client: c.Client, Informers: informer.NewFactory(c.Client, c.Env.JetStream(t), c.Log), Logger: c.Log})
	if err != nil {
		t.Fatal(err)
	}
	podKind, rsKind := cluster.Kind("pods"), cluster.Kind("replicasets")
	owner, err := c.Client.Create(ctx, &appsv1.ReplicaSet{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ref := &metav1.OwnerReference{ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", Uid: owner.GetMetadata().GetUid(), Controller: proto.Bool(true)}
	stale, err := c.Client.Create(ctx, &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "web-1", Namespace: "default",
		Labels: map[string]string{"app": "web"}, OwnerReferences: []*metav1.OwnerReference{ref}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}})
	if err != nil {
		t.Fatal(err)
	}
	// Orphan the pod, then delete its owner, as an orphaning delete does.
	orphaned := proto.Clone(stale).(scheme.Object)
	orphaned.GetMetadata().OwnerReferences = nil
	if _, err := c.Client.Update(ctx, orphaned); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Delete(ctx, rsKind, "default", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g.collect(ctx, podKind, stale, false); err != nil {
		t.Fatalf("collect on a stale copy: %v", err)
	}
	if _, err := c.Client.Get(ctx, podKind, "default", "web-1"); err != nil {
		t.Fatalf("the orphaned pod after the collector saw a stale copy with its gone owner: %v; want it kept", err)
	}
	// The check is not blind: a pod whose owner is really gone is deleted.
	dangling, err := c.Client.Create(ctx, &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "web-2", Namespace: "default",
		OwnerReferences: []*metav1.OwnerReference{ref}}, Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.collect(ctx, podKind, dangling, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Get(ctx, podKind, "default", "web-2"); err == nil {
		t.Fatal("a pod whose only owner is gone was kept; want it deleted")
	}
}
