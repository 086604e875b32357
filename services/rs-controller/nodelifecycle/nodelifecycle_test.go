package nodelifecycle_test

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
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/rs-controller/deployment"
	"github.com/skiff-project/skiff/services/rs-controller/nodelifecycle"
	"github.com/skiff-project/skiff/services/rs-controller/replicaset"
)

var (
	pods  = cluster.Kind("pods")
	nodes = cluster.Kind("nodes")
)

func startControllers(c *cluster.Cluster) { startControllersWithGrace(c, 1500*time.Millisecond) }

func startControllersWithGrace(c *cluster.Cluster, grace time.Duration) {
	c.StartProcess("rs-controller", func(f *informer.Factory) (func(context.Context) error, error) {
		rc, _ := replicaset.New(replicaset.Config{Client: c.Client, Informers: f, Logger: c.Log})
		dc, _ := deployment.New(deployment.Config{Client: c.Client, Informers: f, Logger: c.Log})
		nc, err := nodelifecycle.New(nodelifecycle.Config{Client: c.Client, Informers: f, Logger: c.Log,
			GracePeriod: grace, MonitorPeriod: 200 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			var wg sync.WaitGroup
			for _, run := range []func(context.Context) error{rc.Run, dc.Run, nc.Run} {
				wg.Go(func() { _ = run(ctx) })
			}
			wg.Wait()
			return nil
		}, nil
	})
}

func getNode(t *testing.T, c *cluster.Cluster, name string) *corev1.Node {
	t.Helper()
	obj, err := c.Client.Get(context.Background(), nodes, "", name)
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Node)
}

func ready(n *corev1.Node) string {
	for _, cond := range n.GetStatus().GetConditions() {
		if cond.GetType() == "Ready" {
			return cond.GetStatus()
		}
	}
	return ""
}

func taintKeys(n *corev1.Node) string {
	var out []string
	for _, t := range n.GetSpec().GetTaints() {
		out = append(out, t.GetKey()+":"+t.GetEffect())
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// placement maps node to "active ready pods" of app web.
func placement(t *testing.T, c *cluster.Cluster) (map[string]int, int) {
	t.Helper()
	out, total := map[string]int{}, 0
	for _, obj := range c.List(pods, "default") {
		p := obj.(*corev1.Pod)
		if p.GetMetadata().GetLabels()["app"] == "web" && controller.IsPodActive(p) && controller.IsPodReady(p) {
			out[p.GetSpec().GetNodeName()]++
			total++
		}
	}
	return out, total
}

func TestUnreachableNodeIsTaintedAndItsPodsAreReplacedElsewhere(t *testing.T) {
	one := int64(1)
	c := cluster.Start(t, cluster.Options{Heartbeat: 200 * time.Millisecond, Configure: func(cfg *apiserver.Config) {
		cfg.DefaultUnreachableTolerationSeconds = &one // evict a second after the taint
	}})
	startControllers(c)
	ctx := context.Background()
	lbls := map[string]string{"app": "web"}
	d := &appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(6), Selector: &metav1.LabelSelector{MatchLabels: lbls},
			Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1"}}}}}}
	if _, err := c.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	var victim string
	cluster.WaitFor(t, 30*time.Second, "6 pods ready", func() (bool, string) {
		per, total := placement(t, c)
		for n, k := range per {
			if victim == "" || k > per[victim] {
				victim = n
			}
		}
		return total == 6, fmt.Sprint(per)
	})
	// The apiserver gave the pods the default tolerations (1 s for unreachable, as configured).
	for _, obj := range c.List(pods, "default") {
		var got []string
		for _, tol := range obj.(*corev1.Pod).GetSpec().GetTolerations() {
			got = append(got, fmt.Sprintf("%s:%s:%d", tol.GetKey(), tol.GetEffect(), tol.GetTolerationSeconds()))
		}
		if strings.Join(got, ",") != "node.kubernetes.io/not-ready:NoExecute:300,node.kubernetes.io/unreachable:NoExecute:1" {
			t.Fatalf("pod %s tolerations %v; want the defaults", obj.GetMetadata().GetName(), got)
		}
	}
	// A pod that tolerates unreachability for ever stays.
	stay := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "stay", Namespace: "default"},
		Spec: &corev1.PodSpec{NodeName: victim, Containers: []*corev1.Container{{Name: "c", Image: "i"}},
			Tolerations: []*corev1.Toleration{{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute"}}}}
	if _, err := c.Client.Create(ctx, stay); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	c.Kubelet.StopNode(victim)
	cluster.WaitFor(t, 20*time.Second, "node Unknown and tainted unreachable", func() (bool, string) {
		n := getNode(t, c, victim)
		return ready(n) == "Unknown" && taintKeys(n) == "node.kubernetes.io/unreachable:NoExecute,node.kubernetes.io/unreachable:NoSchedule",
			fmt.Sprintf("Ready=%s taints=%s", ready(n), taintKeys(n))
	})
	cluster.WaitFor(t, 30*time.Second, "6 ready pods, none on the lost node", func() (bool, string) {
		per, total := placement(t, c)
		return total == 6 && per[victim] == 0, fmt.Sprint(per)
	})
	evicted := 0
	for _, obj := range c.List(pods, "default") {
		p := obj.(*corev1.Pod)
		if p.GetSpec().GetNodeName() != victim {
			continue
		}
		switch {
		case p.GetMetadata().GetName() == "stay":
			if p.GetMetadata().GetDeletionTimestamp() != "" {
				t.Errorf("pod tolerating unreachability without a limit was evicted")
			}
			if controller.IsPodReady(p) {
				t.Errorf("pod on an unreachable node still Ready")
			}
		case p.GetMetadata().GetDeletionTimestamp() != "":
			evicted++ // terminating: its node cannot confirm
		}
	}
	if evicted == 0 {
		t.Errorf("no pod of the lost node marked for deletion")
	}

	// The node comes back: Ready again, untainted, and it confirms its evicted pods' deletion.
	c.Kubelet.StartNode(victim)
	cluster.WaitFor(t, 20*time.Second, "node Ready and untainted, evicted pods gone", func() (bool, string) {
		n := getNode(t, c, victim)
		left := 0
		for _, obj := range c.List(pods, "default") {
			if obj.(*corev1.Pod).GetSpec().GetNodeName() == victim && obj.GetMetadata().GetName() != "stay" {
				left++
			}
		}
		return ready(n) == "True" && taintKeys(n) == "" && left == 0, fmt.Sprintf("Ready=%s taints=%q pods left %d", ready(n), taintKeys(n), left)
	})
}

func TestNotReadyNodeGetsTheNotReadyTaint(t *testing.T) {
	c := cluster.Start(t, cluster.Options{Heartbeat: 200 * time.Millisecond, NoScheduler: true})
	// A long grace period: the node reported, it is not silent (which would make it Unknown).
	startControllersWithGrace(c, time.Minute)
	node := c.Nodes[1]
	c.Kubelet.StopNode(node)
	// The node's own report (a fresh heartbeat) says it is not ready.
	n := getNode(t, c, node)
	for _, cond := range n.Status.Conditions {
		if cond.Type == "Ready" {
			ts := controller.Timestamp(time.Now())
			cond.Status, cond.LastHeartbeatTime, cond.LastTransitionTime, cond.Reason = "False", ts, ts, "KubeletNotReady"
		}
	}
	if _, err := c.Client.UpdateStatus(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "not-ready taints", func() (bool, string) {
		n := getNode(t, c, node)
		return taintKeys(n) == "node.kubernetes.io/not-ready:NoExecute,node.kubernetes.io/not-ready:NoSchedule", taintKeys(n)
	})
	for _, other := range []string{c.Nodes[0], c.Nodes[2]} {
		if n := getNode(t, c, other); taintKeys(n) != "" || ready(n) != "True" {
			t.Errorf("heartbeating node %s: Ready=%s taints %q", other, ready(n), taintKeys(n))
		}
	}
}
