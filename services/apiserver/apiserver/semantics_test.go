package apiserver_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

func kind(t *testing.T, name string) *scheme.Kind {
	t.Helper()
	k, err := scheme.Default().ForName(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPod(name string) *corev1.Pod {
	return &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:     &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1.36"}}},
	}
}

func TestGracefulDeletionOfBoundPod(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, pods := env.Client, kind(t, "pods")
	if _, err := c.Create(ctx, newPod("bound")); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(ctx, "default", "bound", "node-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(ctx, "default", "bound", "node-2"); !apierrors.IsConflict(err) {
		t.Errorf("second bind: %v; want Conflict", err)
	}
	got, _ := c.Get(ctx, pods, "default", "bound")
	if got.(*corev1.Pod).Spec.NodeName != "node-1" {
		t.Fatalf("nodeName = %q after bind", got.(*corev1.Pod).Spec.NodeName)
	}

	// A bound pod is only marked: its node must confirm.
	del, err := c.Delete(ctx, pods, "default", "bound", client.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	md := del.GetMetadata()
	if md.DeletionTimestamp == "" || md.GetDeletionGracePeriodSeconds() != 30 {
		t.Errorf("deletionTimestamp=%q grace=%d; want set and 30", md.DeletionTimestamp, md.GetDeletionGracePeriodSeconds())
	}
	if _, err := c.Get(ctx, pods, "default", "bound"); err != nil {
		t.Errorf("pod gone before its node confirmed: %v", err)
	}
	// The node confirms with grace 0.
	zero := int64(0)
	if _, err := c.Delete(ctx, pods, "default", "bound", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, pods, "default", "bound"); !apierrors.IsNotFound(err) {
		t.Errorf("get after confirmed delete: %v; want NotFound", err)
	}

	// An unbound pod goes at once.
	if _, err := c.Create(ctx, newPod("unbound")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, pods, "default", "unbound", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, pods, "default", "unbound"); !apierrors.IsNotFound(err) {
		t.Errorf("unbound pod still there: %v", err)
	}
}

func TestFinalizersHoldAnObject(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, svcs := env.Client, kind(t, "services")
	svc := &corev1.Service{
		Metadata: &metav1.ObjectMeta{Name: "held", Namespace: "default", Finalizers: []string{"example.com/cleanup"}},
		Spec:     &corev1.ServiceSpec{Ports: []*corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"app": "x"}},
	}
	if _, err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, svcs, "default", "held", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, svcs, "default", "held")
	if err != nil || got.GetMetadata().DeletionTimestamp == "" {
		t.Fatalf("held object: %v, deletionTimestamp %q; want present and marked", err, got.GetMetadata().GetDeletionTimestamp())
	}
	got.GetMetadata().Finalizers = nil
	if _, err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, svcs, "default", "held"); !apierrors.IsNotFound(err) {
		t.Errorf("object still there after its last finalizer went: %v", err)
	}
}

func TestStatusSubresourceAndNoOpUpdates(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c := env.Client
	created, err := c.Create(ctx, newPod("st"))
	if err != nil {
		t.Fatal(err)
	}
	// Update ignores status...
	p := proto.Clone(created).(*corev1.Pod)
	p.Status = &corev1.PodStatus{Phase: "Running"}
	upd, err := c.Update(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if upd.(*corev1.Pod).Status.Phase != "Pending" {
		t.Errorf("Update changed status to %q", upd.(*corev1.Pod).Status.Phase)
	}
	if upd.GetMetadata().ResourceVersion != created.GetMetadata().ResourceVersion {
		t.Errorf("a no-op update wrote a new resourceVersion")
	}
	// ...UpdateStatus ignores the rest.
	p.Spec.Containers[0].Image = "busybox:9"
	p.Status = &corev1.PodStatus{Phase: "Running", PodIp: "10.1.0.5"}
	st, err := c.UpdateStatus(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	sp := st.(*corev1.Pod)
	if sp.Status.Phase != "Running" || sp.Status.PodIp != "10.1.0.5" || sp.Spec.Containers[0].Image != "busybox:1.36" {
		t.Errorf("UpdateStatus: phase %q ip %q image %q", sp.Status.Phase, sp.Status.PodIp, sp.Spec.Containers[0].Image)
	}
	if sp.Metadata.Generation != 1 {
		t.Errorf("status update bumped generation to %d", sp.Metadata.Generation)
	}
	// An invalid phase is refused.
	sp.Status.Phase = "Dancing"
	if _, err := c.UpdateStatus(ctx, sp); !apierrors.IsInvalid(err) {
		t.Errorf("invalid phase: %v; want Invalid", err)
	}
}

func TestGenerateNameNamespacesAndFieldSelectors(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c := env.Client
	p := newPod("")
	p.Metadata.GenerateName = "worker-"
	got, err := c.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if n := got.GetMetadata().Name; !strings.HasPrefix(n, "worker-") || len(n) != len("worker-")+5 {
		t.Errorf("generated name %q", n)
	}
	if err := c.Bind(ctx, "default", got.GetMetadata().Name, "node-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, newPod("idle")); err != nil {
		t.Fatal(err)
	}
	l, err := c.List(ctx, kind(t, "pods"), "default", client.ListOptions{FieldSelector: "spec.nodeName=node-a"})
	if err != nil || len(l.Items) != 1 || l.Items[0].GetMetadata().Name != got.GetMetadata().Name {
		t.Errorf("fieldSelector spec.nodeName=node-a: %v %d items", err, len(l.Items))
	}
	l, err = c.List(ctx, kind(t, "pods"), "", client.ListOptions{FieldSelector: "status.phase=Pending,metadata.name=idle"})
	if err != nil || len(l.Items) != 1 {
		t.Errorf("fieldSelector across namespaces: %v %d items", err, len(l.Items))
	}

	// default and kube-system exist from the start and cannot be deleted; deleting a
	// namespace is TestNamespaceDeletionNeverLosesOrOrphansContent.
	nsKind := kind(t, "namespaces")
	for _, n := range []string{"default", "kube-system"} {
		if _, err := c.Get(ctx, nsKind, "", n); err != nil {
			t.Errorf("namespace %s: %v", n, err)
		}
	}
	if _, err := c.Delete(ctx, nsKind, "", "default", client.DeleteOptions{}); apierrors.ReasonOf(err) != apierrors.ReasonForbidden {
		t.Errorf("delete default: %v; want Forbidden", err)
	}
}

func TestReplicaSetAndConflictRetryWithoutResourceVersion(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c := env.Client
	rs := &appsv1.ReplicaSet{
		Metadata: &metav1.ObjectMeta{Name: "rs", Namespace: "default"},
		Spec: &appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "rs"}},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: map[string]string{"app": "rs"}},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}},
		},
	}
	created, err := c.Create(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	if r := created.(*appsv1.ReplicaSet).Spec.Replicas; r == nil || *r != 1 {
		t.Errorf("default replicas = %v, want 1", r)
	}
	// A wrong kind in the body is refused.
	wrong := proto.Clone(created).(*appsv1.ReplicaSet)
	wrong.Kind = "Deployment"
	if _, err := c.Update(ctx, wrong); err == nil {
		t.Errorf("update with kind Deployment on a ReplicaSet was accepted")
	}

	// Without a resourceVersion an update applies to the latest object, however many
	// writers it contends with: 100 concurrent unconditional updates all succeed, each
	// exactly once. Each sets its own replica count and names itself in an annotation.
	const writers = 100
	rvs := make([]string, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := proto.Clone(created).(*appsv1.ReplicaSet)
			next.Metadata.ResourceVersion = ""
			next.Metadata.Annotations = map[string]string{"writer": strconv.Itoa(i)}
			next.Spec.Replicas = proto.Int32(int32(i + 2))
			got, err := c.Update(ctx, next)
			errs[i] = err
			if err == nil {
				rvs[i] = got.GetMetadata().ResourceVersion
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
			continue
		}
		if seen[rvs[i]] {
			t.Errorf("two writers answered with resourceVersion %s", rvs[i])
		}
		seen[rvs[i]] = true
	}
	final, err := c.Get(ctx, kind(t, "replicasets"), "default", "rs")
	if err != nil {
		t.Fatal(err)
	}
	f := final.(*appsv1.ReplicaSet)
	// Every update changed the spec once: the generation counts them all. The stored object
	// is one writer's whole body.
	if f.Metadata.Generation != 1+writers {
		t.Errorf("generation %d after %d spec changes; want %d", f.Metadata.Generation, writers, 1+writers)
	}
	if w, _ := strconv.Atoi(f.Metadata.Annotations["writer"]); *f.Spec.Replicas != int32(w+2) {
		t.Errorf("final object mixes writers: replicas %d, writer %q", *f.Spec.Replicas, f.Metadata.Annotations["writer"])
	}
}
