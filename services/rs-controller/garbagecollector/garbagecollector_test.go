package garbagecollector_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv/cluster"
	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/rs-controller/deployment"
	"github.com/skiff-project/skiff/services/rs-controller/garbagecollector"
	"github.com/skiff-project/skiff/services/rs-controller/replicaset"
)

var (
	pods        = cluster.Kind("pods")
	rss         = cluster.Kind("replicasets")
	deployments = cluster.Kind("deployments")
)

// startControllers runs the workload controllers and the collector in one process.
func startControllers(c *cluster.Cluster, workloads bool) (stop func()) {
	return c.StartProcess("rs-controller", func(f *informer.Factory) (func(context.Context) error, error) {
		var runs []func(context.Context) error
		if workloads {
			rc, err := replicaset.New(replicaset.Config{Client: c.Client, Informers: f, Logger: c.Log})
			if err != nil {
				return nil, err
			}
			dc, err := deployment.New(deployment.Config{Client: c.Client, Informers: f, Logger: c.Log})
			if err != nil {
				return nil, err
			}
			runs = append(runs, rc.Run, dc.Run)
		}
		gc, err := garbagecollector.New(garbagecollector.Config{Client: c.Client, Informers: f, Logger: c.Log, Identity: "test"})
		if err != nil {
			return nil, err
		}
		runs = append(runs, gc.Run)
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

// waitCollector waits until the apiserver accepts a foreground delete (the collector's Lease
// is renewed).
func waitCollector(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	cluster.WaitFor(t, 20*time.Second, "garbage collector lease", func() (bool, string) {
		obj, err := c.Client.Get(context.Background(), cluster.Kind("leases"), "kube-system", "garbage-collector")
		if err != nil {
			return false, err.Error()
		}
		l := obj.(*coordinationv1.Lease)
		return controller.LeaseHeld(l, time.Now()), fmt.Sprint(l.GetSpec())
	})
}

func newDeployment(name string, replicas int32) *appsv1.Deployment {
	lbls := map[string]string{"app": name}
	return &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(replicas), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1"}}}}}}
}

func count(t *testing.T, c *cluster.Cluster, k *scheme.Kind) int {
	t.Helper()
	return len(c.List(k, "default"))
}

// runningDeployment creates a Deployment and waits until its pods run.
func runningDeployment(t *testing.T, c *cluster.Cluster, name string, replicas int32) {
	t.Helper()
	if _, err := c.Client.Create(context.Background(), newDeployment(name, replicas)); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "deployment running", func() (bool, string) {
		obj, err := c.Client.Get(context.Background(), deployments, "default", name)
		if err != nil {
			return false, err.Error()
		}
		st := obj.(*appsv1.Deployment).GetStatus()
		return st.GetAvailableReplicas() == replicas && count(t, c, pods) == int(replicas), fmt.Sprint(st)
	})
}

func TestBackgroundDeletionRemovesReplicaSetsAndPodsAfterTheOwner(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startControllers(c, true)
	runningDeployment(t, c, "web", 3)
	ctx := context.Background()
	if _, err := c.Client.Delete(ctx, deployments, "default", "web", client.DeleteOptions{PropagationPolicy: "Background"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Get(ctx, deployments, "default", "web"); !apierrors.IsNotFound(err) {
		t.Errorf("deployment after a background delete: %v; want gone at once", err)
	}
	cluster.WaitFor(t, 20*time.Second, "replica sets and pods collected", func() (bool, string) {
		r, p := count(t, c, rss), count(t, c, pods)
		return r == 0 && p == 0, fmt.Sprintf("%d replica sets, %d pods", r, p)
	})
}

func TestForegroundDeletionWaitsForBlockingDependents(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	var mu sync.Mutex
	var order []string // kinds in the order their objects went
	for _, k := range []*scheme.Kind{pods, rss, deployments} {
		c.Recorder(k, func(_ *informer.Store, typ string, obj scheme.Object) {
			if typ == "DELETED" {
				mu.Lock()
				order = append(order, k.Kind)
				mu.Unlock()
			}
		})
	}
	startControllers(c, true)
	runningDeployment(t, c, "web", 3)
	waitCollector(t, c)
	ctx := context.Background()
	// A node that does not confirm its pods' deletion holds the whole chain.
	for _, n := range c.Nodes {
		c.Kubelet.StopNode(n)
	}
	if _, err := c.Client.Delete(ctx, deployments, "default", "web", client.DeleteOptions{PropagationPolicy: "Foreground"}); err != nil {
		t.Fatal(err)
	}
	obj, err := c.Client.Get(ctx, deployments, "default", "web")
	if err != nil {
		t.Fatalf("deployment right after a foreground delete: %v; want it kept until its dependents go", err)
	}
	if md := obj.GetMetadata(); md.GetDeletionTimestamp() == "" || !slices.Contains(md.GetFinalizers(), "foregroundDeletion") {
		t.Errorf("deployment metadata %v; want deletionTimestamp and the foregroundDeletion finalizer", md)
	}
	cluster.WaitFor(t, 20*time.Second, "every pod terminating", func() (bool, string) {
		terminating := 0
		for _, p := range c.List(pods, "default") {
			if p.GetMetadata().GetDeletionTimestamp() != "" {
				terminating++
			}
		}
		return terminating == 3, fmt.Sprintf("%d of 3 pods terminating", terminating)
	})
	time.Sleep(300 * time.Millisecond)
	if n := count(t, c, deployments) + count(t, c, rss); n != 2 {
		t.Fatalf("%d of the deployment and its replica set left while pods still terminate; want both", n)
	}
	for _, n := range c.Nodes {
		c.Kubelet.StartNode(n)
	}
	cluster.WaitFor(t, 20*time.Second, "everything gone", func() (bool, string) {
		n := count(t, c, deployments) + count(t, c, rss) + count(t, c, pods)
		return n == 0, fmt.Sprintf("%d objects left", n)
	})
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if want := "Pod,Pod,Pod,ReplicaSet,Deployment"; strings.Join(order, ",") != want {
		t.Errorf("deletion order %v; want %s", order, want)
	}
}

func TestOrphanDeletionKeepsDependentsWithoutTheOwnerReference(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	stop := startControllers(c, true)
	runningDeployment(t, c, "web", 2)
	waitCollector(t, c)
	// The workload controllers would adopt the orphans again; only the collector runs.
	stop()
	startControllers(c, false)
	waitCollector(t, c)
	ctx := context.Background()
	rs := c.List(rss, "default")[0]
	if _, err := c.Client.Delete(ctx, rss, "default", rs.GetMetadata().GetName(), client.DeleteOptions{PropagationPolicy: "Orphan"}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "replica set gone, pods orphaned", func() (bool, string) {
		ps := c.List(pods, "default")
		refs := 0
		for _, p := range ps {
			refs += len(p.GetMetadata().GetOwnerReferences())
		}
		return count(t, c, rss) == 0 && len(ps) == 2 && refs == 0, fmt.Sprintf("%d replica sets, %d pods with %d owner references", count(t, c, rss), len(ps), refs)
	})
	time.Sleep(300 * time.Millisecond)
	if n := count(t, c, pods); n != 2 {
		t.Errorf("%d pods after the orphaning delete settled; want both kept", n)
	}
}

func TestDanglingAndPartlyDanglingDependents(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true, NoKubelet: true})
	ctx := context.Background()
	owner := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "owner", Namespace: "default"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "i"}}}}
	created, err := c.Client.Create(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	live := &metav1.OwnerReference{ApiVersion: "v1", Kind: "Pod", Name: "owner", Uid: created.GetMetadata().GetUid()}
	gone := &metav1.OwnerReference{ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "gone", Uid: "0a0a0a0a-1b1b-4c2c-8d3d-4e4e4e4e4e4e",
		Controller: proto.Bool(true)}
	for name, refs := range map[string][]*metav1.OwnerReference{"dangling": {gone}, "partly": {live, gone}} {
		p := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", OwnerReferences: refs},
			Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "i"}}}}
		if _, err := c.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	startControllers(c, false)
	cluster.WaitFor(t, 20*time.Second, "dangling pod deleted, the other's dangling reference dropped", func() (bool, string) {
		_, err := c.Client.Get(ctx, pods, "default", "dangling")
		obj, perr := c.Client.Get(ctx, pods, "default", "partly")
		if perr != nil {
			return false, "partly: " + perr.Error()
		}
		refs := obj.GetMetadata().GetOwnerReferences()
		return apierrors.IsNotFound(err) && len(refs) == 1 && refs[0].GetUid() == live.GetUid(), fmt.Sprintf("dangling: %v; partly refs %v", err, refs)
	})
	// The live owner goes: so does its last dependent.
	if _, err := c.Client.Delete(ctx, pods, "default", "owner", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "dependent of a deleted owner collected", func() (bool, string) {
		_, err := c.Client.Get(ctx, pods, "default", "partly")
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

func TestWithoutACollectorNothingWaitsForOne(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true, NoKubelet: true})
	ctx := context.Background()
	stop := startControllers(c, false)
	waitCollector(t, c)
	mk := func(name string) {
		p := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "i"}}}}
		if _, err := c.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	mk("held")
	mk("refused")
	// Accepted while the collector runs; then it stops before acting (it sees nothing: the
	// object is held only by the orphan finalizer, which it would remove at once, so stop it
	// first and record the finalizer by hand, as a collector that died would leave it).
	stop()
	obj, _ := c.Client.Get(ctx, pods, "default", "held")
	obj.GetMetadata().Finalizers = []string{controller.FinalizerOrphanDependents}
	if _, err := c.Client.Update(ctx, obj); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Delete(ctx, pods, "default", "held", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if obj, err := c.Client.Get(ctx, pods, "default", "held"); err != nil || obj.GetMetadata().GetDeletionTimestamp() == "" {
		t.Fatalf("pod held by the orphan finalizer: %v %v", obj, err)
	}
	// The stopped collector released its Lease: policies that need it are refused, and
	// nothing changes.
	for _, policy := range []string{"Foreground", "Orphan"} {
		_, err := c.Client.Delete(ctx, pods, "default", "refused", client.DeleteOptions{PropagationPolicy: policy})
		if apierrors.ReasonOf(err) != apierrors.ReasonServiceUnavail || !strings.Contains(err.Error(), "garbage collector") {
			t.Errorf("delete with %s and no collector: %v; want 503 naming the garbage collector", policy, err)
		}
	}
	if obj, err := c.Client.Get(ctx, pods, "default", "refused"); err != nil || obj.GetMetadata().GetDeletionTimestamp() != "" {
		t.Errorf("refused deletes changed the pod: %v %v", obj, err)
	}
	// A background delete releases what was held for the collector.
	if _, err := c.Client.Delete(ctx, pods, "default", "held", client.DeleteOptions{PropagationPolicy: "Background"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Get(ctx, pods, "default", "held"); !apierrors.IsNotFound(err) {
		t.Errorf("held pod after a background delete: %v; want gone", err)
	}
}
