package manager_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/internal/testenv/cluster"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/rs-controller/manager"
)

// TestReplicasWithLeaderElection runs two rs-controller replicas with --leader-elect, as two
// processes would: one acts, and when it stops the other takes over; at no moment do the pods
// of a Deployment exceed what it asks for.
func TestReplicasWithLeaderElection(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	var mu sync.Mutex
	limit, worst := 4, 0
	active := map[string]bool{}
	c.Recorder(cluster.Kind("pods"), func(_ *informer.Store, typ string, obj scheme.Object) {
		mu.Lock()
		defer mu.Unlock()
		key := informer.KeyOf(obj)
		active[key] = typ != "DELETED" && controller.IsPodActive(obj.(*corev1.Pod))
		n := 0
		for _, a := range active {
			if a {
				n++
			}
		}
		worst = max(worst, n-limit)
	})
	replica := func(id string) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		o := component.Options{Name: "rs-controller", Server: c.Env.GRPCAddr, NATSURL: c.Env.NATSURL, HTTPAddr: "127.0.0.1:0",
			LeaderElect: true, LeaseNamespace: "kube-system", Identity: id}
		go func() {
			defer close(done)
			_ = component.Run(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ctx context.Context, env *component.Env) error {
				return manager.Run(ctx, env, manager.Options{Controllers: "replicaset,deployment"})
			})
		}()
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	stops := map[string]func(){"a": replica("a"), "b": replica("b")}
	ctx := context.Background()
	lbls := map[string]string{"app": "web"}
	d := &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(4), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1"}}}}}}
	if _, err := c.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	available := func(n int32) func() (bool, string) {
		return func() (bool, string) {
			obj, err := c.Client.Get(ctx, cluster.Kind("deployments"), "default", "web")
			if err != nil {
				return false, err.Error()
			}
			st := obj.(*appsv1.Deployment).GetStatus()
			return st.GetAvailableReplicas() == n && len(c.List(cluster.Kind("pods"), "default")) == int(n), fmt.Sprint(st)
		}
	}
	cluster.WaitFor(t, 40*time.Second, "4 pods available", available(4))
	time.Sleep(300 * time.Millisecond)
	overshoot := func() {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if worst > 0 {
			t.Errorf("up to %d pods above what the Deployment asked for", worst)
		}
	}
	overshoot()
	obj, err := c.Client.Get(ctx, cluster.Kind("leases"), "kube-system", "rs-controller")
	if err != nil {
		t.Fatal(err)
	}
	leader := obj.(*coordinationv1.Lease).GetSpec().GetHolderIdentity()
	if stops[leader] == nil {
		t.Fatalf("lease held by %q; want a or b", leader)
	}
	stops[leader]()
	mu.Lock()
	limit = 7
	mu.Unlock()
	for {
		obj, _ := c.Client.Get(ctx, cluster.Kind("deployments"), "default", "web")
		dep := obj.(*appsv1.Deployment)
		dep.Spec.Replicas = proto.Int32(7)
		if _, err := c.Client.Update(ctx, dep); err == nil {
			break
		}
	}
	cluster.WaitFor(t, 40*time.Second, "7 pods available after the leader stopped", available(7))
	obj, _ = c.Client.Get(ctx, cluster.Kind("leases"), "kube-system", "rs-controller")
	if now := obj.(*coordinationv1.Lease).GetSpec().GetHolderIdentity(); now == leader || stops[now] == nil {
		t.Errorf("lease now held by %q; want the other replica", now)
	}
	overshoot()
}
