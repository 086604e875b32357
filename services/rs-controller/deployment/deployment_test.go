package deployment_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
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
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/rollout"
	"github.com/skiff-project/skiff/services/rs-controller/deployment"
	"github.com/skiff-project/skiff/services/rs-controller/replicaset"
)

var (
	pods        = cluster.Kind("pods")
	rss         = cluster.Kind("replicasets")
	deployments = cluster.Kind("deployments")
)

// startControllers runs the ReplicaSet and Deployment controllers as one process.
func startControllers(c *cluster.Cluster) (stop func()) {
	return c.StartProcess("rs-controller", func(f *informer.Factory) (func(context.Context) error, error) {
		rc, err := replicaset.New(replicaset.Config{Client: c.Client, Informers: f, Logger: c.Log})
		if err != nil {
			return nil, err
		}
		dc, err := deployment.New(deployment.Config{Client: c.Client, Informers: f, Logger: c.Log})
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			var wg sync.WaitGroup
			wg.Go(func() { _ = rc.Run(ctx) })
			err := dc.Run(ctx)
			wg.Wait()
			return err
		}, nil
	})
}

func intStr(v string) *metav1.IntOrString {
	if strings.HasSuffix(v, "%") {
		return &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: v}}
	}
	var n int32
	fmt.Sscan(v, &n)
	return &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: n}}
}

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	lbls := map[string]string{"app": name}
	return &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(replicas), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: image}}}}}}
}

func rolling(d *appsv1.Deployment, surge, unavailable string) *appsv1.Deployment {
	d.Spec.Strategy = &appsv1.DeploymentStrategy{Type: "RollingUpdate",
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: intStr(surge), MaxUnavailable: intStr(unavailable)}}
	return d
}

func getDeployment(t *testing.T, c *cluster.Cluster, name string) *appsv1.Deployment {
	t.Helper()
	obj, err := c.Client.Get(context.Background(), deployments, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*appsv1.Deployment)
}

// update changes the Deployment, retrying on conflicts with the controller.
func update(t *testing.T, c *cluster.Cluster, name string, change func(d *appsv1.Deployment)) {
	t.Helper()
	for {
		d := getDeployment(t, c, name)
		change(d)
		_, err := c.Client.Update(context.Background(), d)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
}

func setImage(image string) func(d *appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = image }
}

// waitRolledOut waits until `skiff rollout status` would say the rollout succeeded and every
// pod left runs image.
func waitRolledOut(t *testing.T, c *cluster.Cluster, name, image string, timeout time.Duration) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	cluster.WaitFor(t, timeout, fmt.Sprintf("deployment %s rolled out with %s", name, image), func() (bool, string) {
		d = getDeployment(t, c, name)
		msg, done, err := rollout.Status(d, 0)
		if err != nil {
			t.Fatalf("rollout status: %v", err)
		}
		images := podImages(t, c, name)
		return done && images == strings.TrimSuffix(strings.Repeat(image+",", int(d.GetSpec().GetReplicas())), ","),
			fmt.Sprintf("%s; pods: %s", strings.TrimSpace(msg), images)
	})
	return d
}

// podImages lists the images of the Deployment's pods (sorted), terminating ones included.
func podImages(t *testing.T, c *cluster.Cluster, name string) string {
	t.Helper()
	var images []string
	for _, obj := range c.List(pods, "default") {
		p := obj.(*corev1.Pod)
		if p.GetMetadata().GetLabels()["app"] == name {
			images = append(images, p.GetSpec().GetContainers()[0].GetImage())
		}
	}
	sort.Strings(images)
	return strings.Join(images, ",")
}

func condition(d *appsv1.Deployment, typ string) *appsv1.DeploymentCondition {
	for _, c := range d.GetStatus().GetConditions() {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}

func ownedReplicaSets(t *testing.T, c *cluster.Cluster, d *appsv1.Deployment) []*appsv1.ReplicaSet {
	t.Helper()
	var out []*appsv1.ReplicaSet
	for _, obj := range c.List(rss, "default") {
		if ref := controller.ControllerOf(obj.GetMetadata()); ref != nil && ref.GetUid() == d.GetMetadata().GetUid() {
			out = append(out, obj.(*appsv1.ReplicaSet))
		}
	}
	return out
}

// podTracker follows the pods of one app through the event stream and checks an invariant
// after every change.
type podTracker struct {
	mu    sync.Mutex
	app   string
	check func(pods []*corev1.Pod) error
	errs  []error
	max   int
}

func trackPods(c *cluster.Cluster, app string, check func(pods []*corev1.Pod) error) *podTracker {
	pt := &podTracker{app: app, check: check}
	c.Recorder(pods, func(store *informer.Store, _ string, _ scheme.Object) {
		var mine []*corev1.Pod
		for _, obj := range store.List() {
			if p := obj.(*corev1.Pod); p.GetMetadata().GetLabels()["app"] == app {
				mine = append(mine, p)
			}
		}
		pt.mu.Lock()
		defer pt.mu.Unlock()
		if err := pt.check(mine); err != nil && len(pt.errs) < 10 {
			pt.errs = append(pt.errs, err)
		}
	})
	return pt
}

func (pt *podTracker) failures() error {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return errors.Join(pt.errs...)
}

// surgeChecker checks Kubernetes' rolling update promise at every change: never more than
// replicas+maxSurge active pods, and (once the Deployment was first fully ready) never fewer
// than replicas-maxUnavailable ready active pods.
type surgeChecker struct {
	maxPods, minReady int
	armed             bool
	seenMax, seenMin  int
}

func (s *surgeChecker) check(ps []*corev1.Pod) error {
	active, ready := 0, 0
	for _, p := range ps {
		if controller.IsPodActive(p) {
			active++
			if controller.IsPodReady(p) {
				ready++
			}
		}
	}
	s.seenMax = max(s.seenMax, active)
	if ready >= s.minReady+1 || (ready >= s.minReady && active == ready) {
		if !s.armed {
			s.seenMin = ready
		}
		s.armed = true
	}
	if s.armed {
		s.seenMin = min(s.seenMin, ready)
	}
	switch {
	case active > s.maxPods:
		return fmt.Errorf("%d active pods at once; maxSurge allows %d", active, s.maxPods)
	case s.armed && ready < s.minReady:
		return fmt.Errorf("%d ready pods; maxUnavailable allows no fewer than %d", ready, s.minReady)
	}
	return nil
}

func TestRollingUpdateNeverExceedsSurgeNorDropsBelowUnavailability(t *testing.T) {
	for _, tc := range []struct {
		name               string
		replicas           int32
		surge, unavailable string
		maxPods, minReady  int
	}{
		{"percent", 8, "25%", "25%", 10, 6},     // surge 2 (rounded up), unavailable 2 (rounded down)
		{"absolute", 5, "1", "0", 6, 5},         // one extra pod at a time, none unavailable
		{"rounding", 3, "30%", "30%", 4, 3},     // surge ceil(0.9)=1, unavailable floor(0.9)=0
		{"unavailable only", 4, "0", "2", 4, 2}, // no extra pod at all
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster.Start(t, cluster.Options{})
			sc := &surgeChecker{maxPods: tc.maxPods, minReady: tc.minReady}
			pt := trackPods(c, "web", sc.check)
			startControllers(c)
			ctx := context.Background()
			if _, err := c.Client.Create(ctx, rolling(newDeployment("web", tc.replicas, "web:1"), tc.surge, tc.unavailable)); err != nil {
				t.Fatal(err)
			}
			d := waitRolledOut(t, c, "web", "web:1", 30*time.Second)
			if got := d.GetMetadata().GetAnnotations()["deployment.kubernetes.io/revision"]; got != "1" {
				t.Errorf("revision %q after the first rollout; want 1", got)
			}
			update(t, c, "web", setImage("web:2"))
			d = waitRolledOut(t, c, "web", "web:2", 60*time.Second)
			if err := pt.failures(); err != nil {
				t.Errorf("rolling update broke its bounds (max %d pods, min %d ready seen):\n%v", sc.seenMax, sc.seenMin, err)
			}
			t.Logf("at most %d active pods (bound %d), at least %d ready (bound %d)", sc.seenMax, tc.maxPods, sc.seenMin, tc.minReady)
			if sc.seenMax <= int(tc.replicas) && tc.surge != "0" {
				t.Errorf("never more than %d pods: the surge was not used", sc.seenMax)
			}

			if got := d.GetMetadata().GetAnnotations()["deployment.kubernetes.io/revision"]; got != "2" {
				t.Errorf("revision %q after the second rollout; want 2", got)
			}
			st := d.GetStatus()
			if st.GetReplicas() != tc.replicas || st.GetUpdatedReplicas() != tc.replicas || st.GetAvailableReplicas() != tc.replicas ||
				st.GetUnavailableReplicas() != 0 || st.GetObservedGeneration() != d.GetMetadata().GetGeneration() {
				t.Errorf("status %v", st)
			}
			if p := condition(d, "Progressing"); p.GetStatus() != "True" || p.GetReason() != "NewReplicaSetAvailable" {
				t.Errorf("Progressing condition %v; want True NewReplicaSetAvailable", p)
			}
			if a := condition(d, "Available"); a.GetStatus() != "True" || a.GetReason() != "MinimumReplicasAvailable" {
				t.Errorf("Available condition %v", a)
			}
			owned := ownedReplicaSets(t, c, d)
			if len(owned) != 2 {
				t.Fatalf("%d replica sets; want the old and the new", len(owned))
			}
			for _, rs := range owned {
				hash := rs.GetMetadata().GetLabels()["pod-template-hash"]
				if hash == "" || rs.GetMetadata().GetName() != "web-"+hash ||
					rs.GetSpec().GetSelector().GetMatchLabels()["pod-template-hash"] != hash ||
					rs.GetSpec().GetTemplate().GetMetadata().GetLabels()["pod-template-hash"] != hash {
					t.Errorf("replica set %s: hash label %q not in its name, selector and template", rs.GetMetadata().GetName(), hash)
				}
				want := int32(0)
				if rs.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetImage() == "web:2" {
					want = tc.replicas
				}
				if rs.GetSpec().GetReplicas() != want {
					t.Errorf("replica set %s has %d replicas; want %d", rs.GetMetadata().GetName(), rs.GetSpec().GetReplicas(), want)
				}
			}
		})
	}
}

func TestRecreateStopsEveryOldPodBeforeStartingNewOnes(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	var overlap string
	pt := trackPods(c, "web", func(ps []*corev1.Pod) error {
		images := map[string]int{}
		for _, p := range ps {
			images[p.GetSpec().GetContainers()[0].GetImage()]++
		}
		if images["web:1"] > 0 && images["web:2"] > 0 {
			overlap = fmt.Sprint(images)
			return fmt.Errorf("old and new pods at once: %v", images)
		}
		return nil
	})
	startControllers(c)
	ctx := context.Background()
	d := newDeployment("web", 3, "web:1")
	d.Spec.Strategy = &appsv1.DeploymentStrategy{Type: "Recreate"}
	if _, err := c.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "web", "web:1", 30*time.Second)
	update(t, c, "web", setImage("web:2"))
	waitRolledOut(t, c, "web", "web:2", 30*time.Second)
	if err := pt.failures(); err != nil {
		t.Errorf("Recreate overlapped (%s): %v", overlap, err)
	}
}

func TestRollbackBringsTheOldTemplateBackAsANewRevision(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startControllers(c)
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newDeployment("web", 3, "web:1")); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "web", "web:1", 30*time.Second)
	update(t, c, "web", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "web:2"
		d.Metadata.Annotations = map[string]string{"kubernetes.io/change-cause": "image web:2"}
	})
	waitRolledOut(t, c, "web", "web:2", 30*time.Second)
	if _, err := rollout.Undo(ctx, c.Client, "default", "web", 0); err != nil {
		t.Fatal(err)
	}
	d := waitRolledOut(t, c, "web", "web:1", 30*time.Second)
	if got := d.GetMetadata().GetAnnotations()["deployment.kubernetes.io/revision"]; got != "3" {
		t.Errorf("revision %q after the rollback; want 3", got)
	}
	history, err := rollout.History(ctx, c.Client, d)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range history {
		got = append(got, fmt.Sprintf("%d:%s:%s", r.Number, r.ReplicaSet.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetImage(), r.ChangeCause))
	}
	if strings.Join(got, " ") != "2:web:2:image web:2 3:web:1:" {
		t.Errorf("history %v; want revision 2 (web:2, its change cause) and 3 (web:1, the rolled-back revision 1)", got)
	}
	for _, r := range history {
		if r.Number == 3 && r.ReplicaSet.GetMetadata().GetAnnotations()["deployment.kubernetes.io/revision-history"] != "1" {
			t.Errorf("rolled-back replica set's revision-history %q; want 1", r.ReplicaSet.GetMetadata().GetAnnotations())
		}
	}
	if res, err := rollout.Undo(ctx, c.Client, "default", "web", 3); err != nil || !strings.HasPrefix(res, "skipped rollback") {
		t.Errorf("undo to the current revision: %q %v; want skipped", res, err)
	}
	if _, err := rollout.Undo(ctx, c.Client, "default", "web", 7); err == nil {
		t.Error("undo to a revision that does not exist succeeded")
	}
}

func TestPausedDeploymentScalesButDoesNotRollUntilResumed(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startControllers(c)
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newDeployment("web", 2, "web:1")); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "web", "web:1", 30*time.Second)
	if err := rollout.SetPaused(ctx, c.Client, "default", "web", true); err != nil {
		t.Fatal(err)
	}
	if err := rollout.SetPaused(ctx, c.Client, "default", "web", true); err == nil || !strings.Contains(err.Error(), "already paused") {
		t.Errorf("pausing twice: %v; want already paused", err)
	}
	update(t, c, "web", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "web:2"
		d.Spec.Replicas = proto.Int32(3)
	})
	// The size changes; the template does not roll.
	cluster.WaitFor(t, 20*time.Second, "paused deployment scaled to 3 with the old template", func() (bool, string) {
		d := getDeployment(t, c, "web")
		p := condition(d, "Progressing")
		return d.GetStatus().GetObservedGeneration() == d.GetMetadata().GetGeneration() && d.GetStatus().GetAvailableReplicas() == 3 &&
				podImages(t, c, "web") == "web:1,web:1,web:1" && p.GetReason() == "DeploymentPaused" && p.GetStatus() == "Unknown",
			fmt.Sprintf("status %v, pods %s", d.GetStatus(), podImages(t, c, "web"))
	})
	if n := len(ownedReplicaSets(t, c, getDeployment(t, c, "web"))); n != 1 {
		t.Errorf("%d replica sets while paused; want 1 (no rollout)", n)
	}
	if err := rollout.SetPaused(ctx, c.Client, "default", "web", false); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "web", "web:2", 30*time.Second)
}

func TestRevisionHistoryLimitKeepsOnlyThatManyOldReplicaSets(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startControllers(c)
	ctx := context.Background()
	d := newDeployment("web", 1, "web:1")
	d.Spec.RevisionHistoryLimit = proto.Int32(1)
	if _, err := c.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	for _, img := range []string{"web:1", "web:2", "web:3", "web:4"} {
		update(t, c, "web", setImage(img))
		waitRolledOut(t, c, "web", img, 30*time.Second)
	}
	cluster.WaitFor(t, 10*time.Second, "two replica sets left", func() (bool, string) {
		owned := ownedReplicaSets(t, c, getDeployment(t, c, "web"))
		var names []string
		for _, rs := range owned {
			names = append(names, rs.GetSpec().GetTemplate().GetSpec().GetContainers()[0].GetImage())
		}
		sort.Strings(names)
		return strings.Join(names, ",") == "web:3,web:4", strings.Join(names, ",")
	})
}

func TestMinReadySecondsHoldsOldPodsUntilNewOnesAreAvailable(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	// maxUnavailable 0: an old pod may only go once a new one has been ready minReadySeconds.
	var early []string
	firstDeletion := map[string]bool{}
	trackPods(c, "web", func(ps []*corev1.Pod) error {
		now := time.Now()
		var newestAvailable bool
		for _, p := range ps {
			if p.GetSpec().GetContainers()[0].GetImage() == "web:2" && controller.IsPodAvailable(p, 1, now) {
				newestAvailable = true
			}
		}
		for _, p := range ps {
			name := p.GetMetadata().GetName()
			if p.GetSpec().GetContainers()[0].GetImage() == "web:1" && p.GetMetadata().GetDeletionTimestamp() != "" && !firstDeletion[name] {
				firstDeletion[name] = true
				if !newestAvailable {
					early = append(early, name)
				}
			}
		}
		return nil
	})
	startControllers(c)
	ctx := context.Background()
	d := rolling(newDeployment("web", 2, "web:1"), "1", "0")
	d.Spec.MinReadySeconds = 2
	if _, err := c.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "web", "web:1", 30*time.Second)
	update(t, c, "web", setImage("web:2"))
	waitRolledOut(t, c, "web", "web:2", 60*time.Second)
	if len(firstDeletion) != 2 || len(early) > 0 {
		t.Errorf("old pods deleted: %v; deleted before any new pod had been ready for (at least half of) minReadySeconds: %v", firstDeletion, early)
	}
}

func TestProgressDeadlineExceededIsReported(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startControllers(c)
	ctx := context.Background()
	d := newDeployment("web", 2, "web:1")
	d.Spec.ProgressDeadlineSeconds = proto.Int32(2)
	if _, err := c.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "web", "web:1", 30*time.Second)
	// Pods of the new template fit no node: the rollout cannot progress.
	update(t, c, "web", func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Image = "web:2"
		d.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "none-has-it"}
	})
	cluster.WaitFor(t, 20*time.Second, "Progressing=False ProgressDeadlineExceeded", func() (bool, string) {
		d := getDeployment(t, c, "web")
		p := condition(d, "Progressing")
		return p.GetStatus() == "False" && p.GetReason() == "ProgressDeadlineExceeded", fmt.Sprint(p)
	})
	if _, _, err := rollout.Status(getDeployment(t, c, "web"), 0); !errors.Is(err, rollout.ErrProgressDeadline) {
		t.Errorf("rollout status: %v; want exceeded its progress deadline", err)
	}
	// The old pods stayed (maxUnavailable 25% of 2 is 0).
	if got := podImages(t, c, "web"); !strings.HasPrefix(got, "web:1,web:1") {
		t.Errorf("pods %s; want both old pods kept", got)
	}
}

// TestControllerKilledMidRolloutConverges stops the controllers in the middle of a rolling
// update, several times, and checks from the event stream that the rollout never broke its
// bounds and ends with exactly the replicas asked for.
func TestControllerKilledMidRolloutConverges(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	sc := &surgeChecker{maxPods: 7, minReady: 6}
	pt := trackPods(c, "web", sc.check)
	stop := startControllers(c)
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, rolling(newDeployment("web", 6, "web:1"), "1", "0")); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, c, "web", "web:1", 30*time.Second)
	update(t, c, "web", setImage("web:2"))
	for i := range 3 {
		// Let the rollout move a little, then kill the controllers.
		want := strings.Count(podImages(t, c, "web"), "web:2") + 1
		cluster.WaitFor(t, 20*time.Second, "some progress", func() (bool, string) {
			got := podImages(t, c, "web")
			return strings.Count(got, "web:2") >= want, got
		})
		stop()
		t.Logf("controllers killed (%d) with pods %s", i+1, podImages(t, c, "web"))
		time.Sleep(200 * time.Millisecond)
		stop = startControllers(c)
	}
	waitRolledOut(t, c, "web", "web:2", 60*time.Second)
	time.Sleep(300 * time.Millisecond)
	if got := podImages(t, c, "web"); got != "web:2,web:2,web:2,web:2,web:2,web:2" {
		t.Errorf("pods after convergence: %s; want exactly 6 new ones", got)
	}
	if err := pt.failures(); err != nil {
		t.Errorf("bounds broken across restarts (max %d pods, min %d ready): %v", sc.seenMax, sc.seenMin, err)
	}
}
