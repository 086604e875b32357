package registry_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// interloper is a validating admission plugin that, on the first `times` updates or binds it
// sees, writes the object's key behind the registry's back (as a concurrent writer would,
// between the registry's read and its write), so that the write conflicts.
type interloper struct {
	etcd     *clientv3.Client
	key      string
	times    int64
	attempts atomic.Int64
}

func (i *interloper) Validate(ctx context.Context, a *admission.Attributes) error {
	if a.Operation == admission.Delete || (a.Operation == admission.Create && a.SubResource == "") {
		return nil
	}
	if i.attempts.Add(1) > i.times {
		return nil
	}
	resp, err := i.etcd.Get(ctx, i.key)
	if err != nil || len(resp.Kvs) == 0 {
		return err
	}
	_, err = i.etcd.Put(ctx, i.key, string(resp.Kvs[0].Value))
	return err
}

func setup(t *testing.T, times int64) (*registry.Registry, *interloper, *scheme.Kind) {
	t.Helper()
	_, etcd := testenv.Etcd(t)
	il := &interloper{etcd: etcd, key: registry.DefaultPrefix + "/pods/default/web", times: times}
	r := registry.New(storage.New(etcd), scheme.Default(), registry.Options{
		Admission: &admission.Chain{Validators: []admission.Validator{il}}})
	ctx := context.Background()
	if err := r.EnsureNamespace(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	pods, err := scheme.Default().ForName("pods")
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := r.Create(ctx, pods, "default", pod, registry.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return r, il, pods
}

func binding(node string) *corev1.Binding {
	return &corev1.Binding{Metadata: &metav1.ObjectMeta{Name: "web"}, Target: &metav1.ObjectReference{Kind: "Node", Name: node}}
}

// A write without a resourceVersion keeps trying as long as its request lives, however often
// a concurrent writer gets in first (before: 16 attempts, then 409 for updates and 500 for
// binds).
func TestUnconditionalWritesOutlastContention(t *testing.T) {
	r, il, pods := setup(t, 40)
	ctx := context.Background()
	cur, err := r.Get(ctx, pods, "default", "web", registry.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next := cur.(*corev1.Pod)
	next.Metadata.ResourceVersion = ""
	next.Metadata.Labels = map[string]string{"v": "2"}
	if _, err := r.Update(ctx, pods, "default", "web", next, registry.WriteOptions{}); err != nil {
		t.Fatalf("update after 40 conflicts: %v", err)
	}
	if n := il.attempts.Load(); n != 41 {
		t.Errorf("update made %d attempts; want 41 (40 conflicts, then success)", n)
	}
	if n := r.WriteConflicts(); n != 40 {
		t.Errorf("WriteConflicts after the update = %d; want 40", n)
	}

	il.attempts.Store(0)
	if err := r.Bind(ctx, "default", "web", binding("node-1"), registry.WriteOptions{}); err != nil {
		t.Fatalf("bind after 40 conflicts: %v", err)
	}
	got, _ := r.Get(ctx, pods, "default", "web", registry.GetOptions{})
	if got.(*corev1.Pod).Spec.NodeName != "node-1" || got.GetMetadata().Labels["v"] != "2" {
		t.Errorf("after the contended writes: node %q labels %v", got.(*corev1.Pod).Spec.NodeName, got.GetMetadata().Labels)
	}
	if n := r.WriteConflicts(); n != 80 {
		t.Errorf("WriteConflicts after the bind = %d; want 80", n)
	}
}

// When the request ends while writers keep getting in first, the answer is 409 Conflict (the
// client may retry), never a 500.
func TestContendedBindGivesUpWithConflict(t *testing.T) {
	r, il, _ := setup(t, 1<<40)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := r.Bind(ctx, "default", "web", binding("node-1"), registry.WriteOptions{})
	if !apierrors.IsConflict(err) {
		t.Errorf("bind that never wins: %v (HTTP %d); want 409 Conflict", err, apierrors.FromError(err).Status.GetCode())
	}
	if n := il.attempts.Load(); n < 2 {
		t.Errorf("bind gave up after %d attempts", n)
	}
}
