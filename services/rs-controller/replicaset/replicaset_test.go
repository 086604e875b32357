package replicaset_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv/cluster"
	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/rs-controller/replicaset"
)

var (
	pods = cluster.Kind("pods")
	rss  = cluster.Kind("replicasets")
)

func startController(c *cluster.Cluster) (stop func()) {
	return startControllerWith(c, replicaset.Config{})
}

func startControllerWith(c *cluster.Cluster, cfg replicaset.Config) (stop func()) {
	return startControllerOn(c, c.Env.JetStream(c.T()), cfg)
}

func startControllerOn(c *cluster.Cluster, js jetstream.JetStream, cfg replicaset.Config) (stop func()) {
	return c.StartProcessOn("replicaset", js, func(f *informer.Factory) (func(context.Context) error, error) {
		cfg.Client, cfg.Informers, cfg.Logger = c.Client, f, c.Log
		rc, err := replicaset.New(cfg)
		if err != nil {
			return nil, err
		}
		return rc.Run, nil
	})
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	lbls := map[string]string{"app": name}
	return &appsv1.ReplicaSet{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &appsv1.ReplicaSetSpec{Replicas: proto.Int32(replicas), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1"}}}}}}
}

func getRS(t *testing.T, c *cluster.Cluster, name string) *appsv1.ReplicaSet {
	t.Helper()
	obj, err := c.Client.Get(context.Background(), rss, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*appsv1.ReplicaSet)
}

// ownedPods lists the active pods controlled by the ReplicaSet with uid.
func ownedPods(t *testing.T, c *cluster.Cluster, uid string) []*corev1.Pod {
	t.Helper()
	var out []*corev1.Pod
	for _, obj := range c.List(pods, "default") {
		p := obj.(*corev1.Pod)
		if ref := controller.ControllerOf(p.GetMetadata()); ref != nil && ref.GetUid() == uid && controller.IsPodActive(p) {
			out = append(out, p)
		}
	}
	return out
}

func scale(t *testing.T, c *cluster.Cluster, name string, replicas int32) {
	t.Helper()
	for {
		rs := getRS(t, c, name)
		rs.Spec.Replicas = proto.Int32(replicas)
		_, err := c.Client.Update(context.Background(), rs)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "modified") {
			t.Fatal(err)
		}
	}
}

// waitSettled waits until the ReplicaSet has want ready pods, all of them reflected in status.
func waitSettled(t *testing.T, c *cluster.Cluster, name string, want int32) *appsv1.ReplicaSet {
	t.Helper()
	var rs *appsv1.ReplicaSet
	cluster.WaitFor(t, 20*time.Second, fmt.Sprintf("replicaset %s settled at %d", name, want), func() (bool, string) {
		rs = getRS(t, c, name)
		st := rs.GetStatus()
		n := len(ownedPods(t, c, rs.GetMetadata().GetUid()))
		total := len(c.List(pods, "default"))
		return st.GetReplicas() == want && st.GetReadyReplicas() == want && st.GetAvailableReplicas() == want &&
				st.GetObservedGeneration() == rs.GetMetadata().GetGeneration() && n == int(want) && total == int(want),
			fmt.Sprintf("status %v, %d owned active pods, %d pods in all", st, n, total)
	})
	return rs
}

func TestScaleUpAndDownWritesStatusAndOwners(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startController(c)
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newRS("web", 5)); err != nil {
		t.Fatal(err)
	}
	rs := waitSettled(t, c, "web", 5)
	for _, p := range ownedPods(t, c, rs.GetMetadata().GetUid()) {
		md := p.GetMetadata()
		ref := md.GetOwnerReferences()[0]
		if len(md.GetOwnerReferences()) != 1 || ref.GetKind() != "ReplicaSet" || ref.GetApiVersion() != "apps/v1" ||
			ref.GetName() != "web" || !ref.GetController() || !ref.GetBlockOwnerDeletion() {
			t.Errorf("pod %s owner references: %v", md.GetName(), md.GetOwnerReferences())
		}
		if !strings.HasPrefix(md.GetName(), "web-") || md.GetGenerateName() != "web-" {
			t.Errorf("pod name %s (generateName %q): want web-XXXXX", md.GetName(), md.GetGenerateName())
		}
		if md.GetLabels()["app"] != "web" || p.GetSpec().GetContainers()[0].GetImage() != "web:1" {
			t.Errorf("pod %s is not from the template: %v", md.GetName(), p)
		}
	}
	scale(t, c, "web", 2)
	rs = waitSettled(t, c, "web", 2)
	if got := rs.GetStatus().GetObservedGeneration(); got != 2 {
		t.Errorf("observedGeneration %d after one spec change; want 2", got)
	}
	scale(t, c, "web", 0)
	waitSettled(t, c, "web", 0)
}

func TestDeletedPodIsReplaced(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startController(c)
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newRS("web", 3)); err != nil {
		t.Fatal(err)
	}
	rs := waitSettled(t, c, "web", 3)
	victim := ownedPods(t, c, rs.GetMetadata().GetUid())[0].GetMetadata().GetName()
	if _, err := c.Client.Delete(ctx, pods, "default", victim, clientDelete()); err != nil {
		t.Fatal(err)
	}
	waitSettled(t, c, "web", 3)
	for _, p := range ownedPods(t, c, rs.GetMetadata().GetUid()) {
		if p.GetMetadata().GetName() == victim {
			t.Errorf("deleted pod %s still counted", victim)
		}
	}
}

func TestAdoptsMatchingOrphansAndReleasesPodsThatStopMatching(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	ctx := context.Background()
	orphan := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "orphan", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "other:9"}}}}
	if _, err := c.Client.Create(ctx, orphan); err != nil {
		t.Fatal(err)
	}
	// Someone else's pod that matches must never be taken.
	foreign := proto.Clone(orphan).(*corev1.Pod)
	foreign.Metadata.Name = "foreign"
	foreign.Metadata.OwnerReferences = []*metav1.OwnerReference{{ApiVersion: "apps/v1", Kind: "ReplicaSet", Name: "other",
		Uid: "11111111-2222-4333-8444-555555555555", Controller: proto.Bool(true)}}
	if _, err := c.Client.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	startController(c)
	if _, err := c.Client.Create(ctx, newRS("web", 2)); err != nil {
		t.Fatal(err)
	}
	var rs *appsv1.ReplicaSet
	cluster.WaitFor(t, 20*time.Second, "orphan adopted and one pod created", func() (bool, string) {
		rs = getRS(t, c, "web")
		owned := ownedPods(t, c, rs.GetMetadata().GetUid())
		names := podNames(owned)
		return len(owned) == 2 && strings.Contains(names, "orphan") && rs.GetStatus().GetReplicas() == 2, names
	})
	f, _ := c.Client.Get(ctx, pods, "default", "foreign")
	if ref := controller.ControllerOf(f.GetMetadata()); ref.GetName() != "other" || len(f.GetMetadata().GetOwnerReferences()) != 1 {
		t.Errorf("foreign pod's owners changed: %v", f.GetMetadata().GetOwnerReferences())
	}

	// The orphan stops matching: released (no owner) and replaced.
	obj, _ := c.Client.Get(ctx, pods, "default", "orphan")
	p := obj.(*corev1.Pod)
	p.Metadata.Labels = map[string]string{"app": "elsewhere"}
	if _, err := c.Client.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "pod released and replaced", func() (bool, string) {
		obj, _ := c.Client.Get(ctx, pods, "default", "orphan")
		owned := ownedPods(t, c, rs.GetMetadata().GetUid())
		return len(obj.GetMetadata().GetOwnerReferences()) == 0 && len(owned) == 2 && !strings.Contains(podNames(owned), "orphan"),
			fmt.Sprintf("orphan owners %v, owned %s", obj.GetMetadata().GetOwnerReferences(), podNames(owned))
	})
}

// TestNeverOvershootsWhileEventsLag checks from the event stream that a ReplicaSet scaled up at
// once never controls more active pods than it asks for, although its informer sees its own
// creations only later.
func TestNeverOvershootsWhileEventsLag(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true, NoKubelet: true})
	var mu sync.Mutex
	maxActive, current := 0, map[string]bool{}
	c.Recorder(pods, func(_ *informer.Store, typ string, obj scheme.Object) {
		mu.Lock()
		defer mu.Unlock()
		key := informer.KeyOf(obj)
		if typ != "DELETED" && controller.IsPodActive(obj.(*corev1.Pod)) && controller.ControllerOf(obj.GetMetadata()) != nil {
			current[key] = true
		} else {
			delete(current, key)
		}
		maxActive = max(maxActive, len(current))
	})
	// Small bursts on a bus that delivers 100 ms late: each reconcile follows the last one's
	// creations long before the informer has seen them.
	startControllerOn(c, c.LaggingJetStream(t, 100*time.Millisecond), replicaset.Config{BurstReplicas: 7})
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newRS("web", 1)); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "1 pod", func() (bool, string) {
		n := len(c.List(pods, "default"))
		return n == 1, fmt.Sprint(n)
	})
	for _, n := range []int32{60, 120} {
		scale(t, c, "web", n)
		cluster.WaitFor(t, 30*time.Second, fmt.Sprintf("%d pods", n), func() (bool, string) {
			rs := getRS(t, c, "web")
			got := len(c.List(pods, "default"))
			return got == int(n) && rs.GetStatus().GetReplicas() == n, fmt.Sprintf("%d pods, status %v", got, rs.GetStatus())
		})
	}
	time.Sleep(500 * time.Millisecond) // anything extra would have been created by now
	mu.Lock()
	defer mu.Unlock()
	if got := len(c.List(pods, "default")); maxActive > 120 || got != 120 {
		t.Errorf("at most %d active pods seen at once, %d now; want never above 120", maxActive, got)
	}
}

func TestScaleDownDeletesNotReadyPodsFirst(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startController(c)
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newRS("web", 3)); err != nil {
		t.Fatal(err)
	}
	rs := waitSettled(t, c, "web", 3)
	owned := ownedPods(t, c, rs.GetMetadata().GetUid())
	sick := owned[1].GetMetadata().GetName()
	c.Kubelet.SetPodReady("default", sick, false)
	cluster.WaitFor(t, 10*time.Second, "one pod not ready", func() (bool, string) {
		st := getRS(t, c, "web").GetStatus()
		return st.GetReadyReplicas() == 2, fmt.Sprint(st)
	})
	scale(t, c, "web", 2)
	waitSettled(t, c, "web", 2)
	if names := podNames(ownedPods(t, c, rs.GetMetadata().GetUid())); strings.Contains(names, sick) {
		t.Errorf("scale-down kept the not-ready pod %s: %s", sick, names)
	}
}

func TestAvailableReplicasWaitForMinReadySeconds(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startController(c)
	ctx := context.Background()
	rs := newRS("web", 2)
	rs.Spec.MinReadySeconds = 2
	if _, err := c.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	var readyAt time.Time
	cluster.WaitFor(t, 20*time.Second, "2 ready", func() (bool, string) {
		st := getRS(t, c, "web").GetStatus()
		return st.GetReadyReplicas() == 2, fmt.Sprint(st)
	})
	readyAt = time.Now()
	if st := getRS(t, c, "web").GetStatus(); st.GetAvailableReplicas() != 0 {
		t.Errorf("available %d as soon as ready; want 0 before minReadySeconds", st.GetAvailableReplicas())
	}
	cluster.WaitFor(t, 20*time.Second, "2 available", func() (bool, string) {
		st := getRS(t, c, "web").GetStatus()
		return st.GetAvailableReplicas() == 2, fmt.Sprint(st)
	})
	if waited := time.Since(readyAt); waited < 500*time.Millisecond {
		t.Errorf("available %s after ready; want about minReadySeconds", waited)
	}
}

func podNames(ps []*corev1.Pod) string {
	var names []string
	for _, p := range ps {
		names = append(names, p.GetMetadata().GetName())
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// refusePods is an admission plugin that refuses every pod creation, as a quota would.
type refusePods struct{ attempts atomic.Int64 }

func (r *refusePods) Validate(_ context.Context, a *admission.Attributes) error {
	if a.Operation == admission.Create && a.Kind.Kind == "Pod" && a.SubResource == "" {
		r.attempts.Add(1)
		return apierrors.NewForbidden("", "pods", a.Name, "exceeded quota: pods")
	}
	return nil
}

func TestFailedCreationsAreReportedAndNotHammered(t *testing.T) {
	refuse := &refusePods{}
	c := cluster.Start(t, cluster.Options{NoScheduler: true, NoKubelet: true, Configure: func(cfg *apiserver.Config) {
		cfg.Admission = &admission.Chain{Validators: []admission.Validator{refuse}}
	}})
	startController(c)
	if _, err := c.Client.Create(context.Background(), newRS("web", 50)); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "ReplicaFailure condition", func() (bool, string) {
		rs := getRS(t, c, "web")
		for _, cond := range rs.GetStatus().GetConditions() {
			if cond.GetType() == "ReplicaFailure" && cond.GetStatus() == "True" && cond.GetReason() == "FailedCreate" &&
				strings.Contains(cond.GetMessage(), "exceeded quota") {
				return true, ""
			}
		}
		return false, fmt.Sprint(rs.GetStatus())
	})
	// Slow start: each failing reconcile tries one creation, not fifty; retries back off.
	time.Sleep(time.Second)
	if n := refuse.attempts.Load(); n > 20 {
		t.Errorf("%d creations attempted in about a second of refusals; want a few (batches start at 1 and stop at the first failure)", n)
	}
}
