package hollow_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"

	"github.com/skiff-project/skiff/internal/nodetest"
	"github.com/skiff-project/skiff/node/kubelet/hollow"
	"github.com/skiff-project/skiff/node/kubelet/kubelet"
)

// TestHollowFleet: 20 hollow kubelets in one process register their Nodes (labels, capacity,
// Ready, node info), heartbeat Leases in kube-node-lease, run the pods bound to them (Running,
// an IP from each node's CIDR), restart a container that exits, and confirm graceful deletions.
func TestHollowFleet(t *testing.T) {
	env := testenv.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	factory := informer.NewFactory(env.Client, env.JetStream(t), log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 20
	fleet, err := hollow.Start(ctx, hollow.Config{Count: n, Prefix: "hollow", Client: env.Client, Informers: factory, Logger: log,
		Configure: func(_ int, c *kubelet.Config) { c.HeartbeatInterval = 300 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if errs := fleet.Stop(); len(errs) > 0 {
			t.Errorf("hollow nodes failed: %v", errs)
		}
		factory.Shutdown()
	}()
	if err := fleet.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	nodes, _ := env.Client.Scheme().ForName("nodes")
	leases, _ := env.Client.Scheme().ForName("leases")
	pods, _ := env.Client.Scheme().ForName("pods")
	nodetest.Eventually(t, 20*time.Second, "nodes registered and Leases held", func() error {
		list, err := env.Client.List(ctx, nodes, "", client.ListOptions{})
		if err != nil || len(list.Items) != n {
			return fmt.Errorf("%d nodes, %v", len(list.Items), err)
		}
		for _, obj := range list.Items {
			node := obj.(*corev1.Node)
			l := node.GetMetadata().GetLabels()
			if l["kubernetes.io/hostname"] != node.GetMetadata().GetName() || l["kubernetes.io/os"] != "linux" || l["kubernetes.io/arch"] == "" || l["skiff.io/hollow"] != "true" {
				return fmt.Errorf("node %s labels %v", node.GetMetadata().GetName(), l)
			}
			st := node.GetStatus()
			if st.GetCapacity()["pods"] != "110" || st.GetAllocatable()["cpu"] != "4" || st.GetNodeInfo().GetKernelVersion() == "" ||
				st.GetNodeInfo().GetContainerRuntimeVersion() != "hollow://v0.1.0" || node.GetSpec().GetPodCidr() == "" {
				return fmt.Errorf("node %s status %v spec %v", node.GetMetadata().GetName(), st, node.GetSpec())
			}
			readyCond := false
			for _, c := range st.GetConditions() {
				readyCond = readyCond || c.GetType() == "Ready" && c.GetStatus() == "True" && c.GetLastHeartbeatTime() != ""
			}
			if !readyCond {
				return fmt.Errorf("node %s not Ready: %v", node.GetMetadata().GetName(), st.GetConditions())
			}
			obj, err := env.Client.Get(ctx, leases, "kube-node-lease", node.GetMetadata().GetName())
			if err != nil {
				return err
			}
			if ls := obj.(*coordinationv1.Lease).GetSpec(); ls.GetHolderIdentity() != node.GetMetadata().GetName() || ls.GetLeaseDurationSeconds() != 40 || ls.GetRenewTime() == "" {
				return fmt.Errorf("lease %v", ls)
			}
		}
		return nil
	})

	// The Lease is renewed: its renewTime moves on.
	renewed := func() string {
		obj, err := env.Client.Get(ctx, leases, "kube-node-lease", "hollow-0")
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*coordinationv1.Lease).GetSpec().GetRenewTime()
	}
	first := renewed()
	nodetest.Eventually(t, 10*time.Second, "the Lease renewed", func() error {
		if now := renewed(); now <= first {
			return fmt.Errorf("renewTime still %s", now)
		}
		return nil
	})

	for i := range 2 * n {
		p := &corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "default"},
			Spec: &corev1.PodSpec{NodeName: fmt.Sprintf("hollow-%d", i%n), Containers: []*corev1.Container{{Name: "c", Image: "skiff-demo:v1"}}}}
		if _, err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	nodetest.Eventually(t, 30*time.Second, "every pod Running with an IP of its node's CIDR", func() error {
		list, err := env.Client.List(ctx, pods, "default", client.ListOptions{})
		if err != nil {
			return err
		}
		for _, obj := range list.Items {
			p := obj.(*corev1.Pod)
			if p.GetStatus().GetPhase() != "Running" {
				return fmt.Errorf("%s is %q", p.GetMetadata().GetName(), p.GetStatus().GetPhase())
			}
			node, err := env.Client.Get(ctx, nodes, "", p.GetSpec().GetNodeName())
			if err != nil {
				return err
			}
			_, cidr, _ := net.ParseCIDR(node.(*corev1.Node).GetSpec().GetPodCidr())
			if !cidr.Contains(net.ParseIP(p.GetStatus().GetPodIp())) {
				return fmt.Errorf("%s has IP %s outside %s", p.GetMetadata().GetName(), p.GetStatus().GetPodIp(), cidr)
			}
		}
		return nil
	})

	// The apiserver's kubelet proxy: a hollow node serves no kubelet API (503), an unbound pod
	// has no node (400), an unknown pod is 404.
	conn, err := grpc.NewClient(env.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := corev1.NewKubeletAPIClient(conn)
	unbound := &corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "unbound", Namespace: "default"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "skiff-demo:v1"}}}}
	if _, err := env.Client.Create(ctx, unbound); err != nil {
		t.Fatal(err)
	}
	for pod, want := range map[string]int32{"p1": 503, "unbound": 400, "nosuch": 404} {
		stream, err := api.Logs(ctx, &corev1.PodLogsRequest{Namespace: "default", Name: pod})
		if err == nil {
			_, err = stream.Recv()
		}
		if got := apierrors.FromError(err).Status.GetCode(); got != want {
			t.Errorf("logs of %s: %v (code %d), want %d", pod, err, got, want)
		}
		if pod == "p1" && !strings.Contains(err.Error(), "reports no kubelet endpoint") {
			t.Errorf("logs of a pod on a hollow node: %v, want the node's missing kubelet endpoint named", err)
		}
	}

	// A container that exits is restarted (restartPolicy Always).
	rt := fleet.Runtimes[0]
	cs, _ := rt.ListContainers(ctx)
	rt.Exit(cs[0].ID, 1)
	nodetest.Eventually(t, 20*time.Second, "the exited container restarted", func() error {
		obj, err := env.Client.Get(ctx, pods, "default", cs[0].Pod.Name)
		if err != nil {
			return err
		}
		st := obj.(*corev1.Pod).GetStatus().GetContainerStatuses()
		if len(st) != 1 || st[0].GetRestartCount() != 1 || st[0].GetState().GetRunning() == nil {
			return fmt.Errorf("status %v", st)
		}
		return nil
	})

	// Graceful deletion: the node stops the pod and confirms; the object goes away.
	if _, err := env.Client.Delete(ctx, pods, "default", "p0", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 20*time.Second, "p0 deleted", func() error {
		if _, err := env.Client.Get(ctx, pods, "default", "p0"); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	left, _ := fleet.Runtimes[0].ListContainers(ctx)
	for _, c := range left {
		if c.Pod.Name == "p0" {
			t.Errorf("hollow-0 still holds container %s of the deleted p0", c.ID)
		}
	}
	if sbs, _ := fleet.Runtimes[0].ListSandboxes(ctx); len(sbs) != 1 {
		t.Errorf("hollow-0 holds %d sandboxes after p0's deletion, want 1 (p20's)", len(sbs))
	}
}
