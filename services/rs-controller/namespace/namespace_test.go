package namespace_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv/cluster"
	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/endpoints/endpoints"
	"github.com/skiff-project/skiff/services/rs-controller/deployment"
	"github.com/skiff-project/skiff/services/rs-controller/garbagecollector"
	"github.com/skiff-project/skiff/services/rs-controller/namespace"
	"github.com/skiff-project/skiff/services/rs-controller/replicaset"
)

var namespaces = cluster.Kind("namespaces")

// startAll runs every controller, as rs-controller and endpoints do, in one process.
func startAll(c *cluster.Cluster) {
	c.StartProcess("controllers", func(f *informer.Factory) (func(context.Context) error, error) {
		var runs []func(context.Context) error
		nc, err := namespace.New(namespace.Config{Client: c.Client, Informers: f, Logger: c.Log})
		if err != nil {
			return nil, err
		}
		rc, _ := replicaset.New(replicaset.Config{Client: c.Client, Informers: f, Logger: c.Log})
		dc, _ := deployment.New(deployment.Config{Client: c.Client, Informers: f, Logger: c.Log})
		gc, err := garbagecollector.New(garbagecollector.Config{Client: c.Client, Informers: f, Logger: c.Log})
		if err != nil {
			return nil, err
		}
		ec, _ := endpoints.New(endpoints.Config{Client: c.Client, Informers: f, Logger: c.Log})
		runs = append(runs, nc.Run, rc.Run, dc.Run, gc.Run, ec.Run)
		return func(ctx context.Context) error {
			var wg sync.WaitGroup
			for _, run := range runs {
				wg.Go(func() { _ = run(ctx) })
			}
			wg.Wait()
			return nil
		}, nil
	})
}

// content counts the objects of every namespaced kind in ns.
func content(t *testing.T, c *cluster.Cluster, ns string) (int, string) {
	t.Helper()
	total, desc := 0, ""
	for _, k := range scheme.Default().Kinds() {
		if !k.Namespaced {
			continue
		}
		if n := len(c.List(k, ns)); n > 0 {
			total += n
			desc += fmt.Sprintf("%s=%d ", k.Resource, n)
		}
	}
	return total, desc
}

func TestDeletingANamespaceEmptiesItThenRemovesIt(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startAll(c)
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "team"}}); err != nil {
		t.Fatal(err)
	}
	lbls := map[string]string{"app": "web"}
	d := &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(3), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1"}}}}}}
	svc := &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: &corev1.ServiceSpec{Selector: lbls, Ports: []*corev1.ServicePort{{Port: 80}}}}
	// A pod held by someone else's finalizer: the namespace waits for it.
	held := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "held", Namespace: "team", Finalizers: []string{"example.com/hold"}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "i"}}}}
	for _, obj := range []scheme.Object{d, svc, held} {
		if _, err := c.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	cluster.WaitFor(t, 30*time.Second, "workload running", func() (bool, string) {
		n := len(c.List(cluster.Kind("pods"), "team"))
		eps := len(c.List(cluster.Kind("endpoints"), "team"))
		return n == 4 && eps == 1, fmt.Sprintf("%d pods, %d endpoints", n, eps)
	})

	if _, err := c.Client.Delete(ctx, namespaces, "", "team", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.Client.Get(ctx, namespaces, "", "team")
	if err != nil || obj.(*corev1.Namespace).GetStatus().GetPhase() != "Terminating" {
		t.Fatalf("namespace after delete: %v %v; want Terminating", obj, err)
	}
	_, err = c.Client.Create(ctx, &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "late", Namespace: "team"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "i"}}}})
	if !apierrors.HasStatusCause(err, apierrors.CauseNamespaceTerminating) {
		t.Errorf("create in a terminating namespace: %v; want 403 NamespaceTerminating", err)
	}
	cluster.WaitFor(t, 30*time.Second, "everything but the held pod deleted", func() (bool, string) {
		n, desc := content(t, c, "team")
		return n == 1, desc
	})
	obj, _ = c.Client.Get(ctx, cluster.Kind("pods"), "team", "held")
	if obj.GetMetadata().GetDeletionTimestamp() == "" {
		t.Errorf("held pod not marked for deletion")
	}
	if _, err := c.Client.Get(ctx, namespaces, "", "team"); err != nil {
		t.Fatalf("namespace gone while an object is left: %v", err)
	}
	obj.GetMetadata().Finalizers = nil
	if _, err := c.Client.Update(ctx, obj); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "namespace removed", func() (bool, string) {
		_, err := c.Client.Get(ctx, namespaces, "", "team")
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func TestBuiltInNamespacesCannotBeDeleted(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true, NoKubelet: true})
	startAll(c)
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		_, err := c.Client.Delete(context.Background(), namespaces, "", name, client.DeleteOptions{})
		if apierrors.ReasonOf(err) != apierrors.ReasonForbidden {
			t.Errorf("delete namespace %s: %v; want 403", name, err)
		}
	}
}
