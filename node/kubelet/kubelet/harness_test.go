package kubelet_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"

	"github.com/skiff-project/skiff/internal/nodetest"
	"github.com/skiff-project/skiff/node/kubelet/cni"
	"github.com/skiff-project/skiff/node/kubelet/kubelet"
	ctrd "github.com/skiff-project/skiff/node/kubelet/runtime/containerd"
)

// cluster is a control plane (testenv) and one real node: a containerd of the test's own and
// a kubelet on it, with the test images loaded.
type cluster struct {
	t         testing.TB
	env       *testenv.Env
	dir       string
	daemon    *ctrd.Daemon
	nodeName  string
	podCIDR   string
	kubelet   *kubelet.Kubelet
	rt        *ctrd.Runtime
	stop      func()
	pods      *scheme.Kind
	api       corev1.KubeletAPIClient
	configure []func(*kubelet.Config)
}

func quiet() *slog.Logger {
	if os.Getenv("SKIFF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts a control plane and a node; everything stops and is removed when the
// test ends.
func startCluster(t testing.TB, configure ...func(*kubelet.Config)) *cluster {
	t.Helper()
	nodetest.RequireRoot(t)
	images := nodetest.Images(t)
	c := &cluster{t: t, env: testenv.Start(t), dir: nodetest.ShortTempDir(t), podCIDR: nodetest.PodCIDR(t), configure: configure}
	c.nodeName = "node-" + filepath.Base(c.dir)[2:]
	c.pods, _ = c.env.Client.Scheme().ForName("pods")
	ctx := context.Background()
	d, err := ctrd.StartDaemon(ctx, ctrd.DaemonConfig{Dir: filepath.Join(c.dir, "ctrd"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	c.daemon = d
	t.Cleanup(c.teardown)
	rt := c.newRuntime()
	for _, path := range []string{images.Busybox, images.Demo} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.ImportImages(ctx, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	c.startKubelet(rt)
	conn, err := grpc.NewClient(c.env.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.api = corev1.NewKubeletAPIClient(conn)
	return c
}

func (c *cluster) newRuntime() *ctrd.Runtime {
	rt, err := ctrd.New(context.Background(), ctrd.Config{Address: c.daemon.Address, StateDir: filepath.Join(c.dir, "rt"),
		ImageFsPath: c.daemon.Root, CgroupParent: "/skiff-test", Logger: quiet(),
		CNI: cni.Config{NodeName: c.nodeName, DataDir: filepath.Join(c.dir, "cni")}})
	if err != nil {
		c.t.Fatal(err)
	}
	return rt
}

// startKubelet runs a kubelet on rt until stopKubelet (or the test's end).
func (c *cluster) startKubelet(rt *ctrd.Runtime) {
	c.t.Helper()
	factory := informer.NewFactory(c.env.Client, c.env.JetStream(c.t), quiet())
	cfg := kubelet.Config{NodeName: c.nodeName, NodeIP: "127.0.0.1", PodCIDR: c.podCIDR, Runtime: rt,
		RootDir: filepath.Join(c.dir, "kubelet"), ServerAddr: "127.0.0.1:0", Client: c.env.Client, Informers: factory,
		Logger: quiet(), BackoffBase: time.Second, BackoffMax: 4 * time.Second, ResyncInterval: 2 * time.Second,
		ClusterDNS: []string{"10.96.0.10"}}
	for _, f := range c.configure {
		f(&cfg)
	}
	k, err := kubelet.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	select {
	case <-k.Ready():
	case err := <-done:
		cancel()
		c.t.Fatalf("kubelet: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		c.t.Fatal("kubelet not ready in 30s")
	}
	c.kubelet, c.rt = k, rt
	c.stop = func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("kubelet: %v", err)
		}
		factory.Shutdown()
		rt.Close()
	}
}

func (c *cluster) stopKubelet() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
}

// teardown stops the kubelet and removes whatever still runs, then containerd and the bridge.
func (c *cluster) teardown() {
	c.stopKubelet()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt := c.newRuntime()
	if cs, err := rt.ListContainers(ctx); err == nil {
		for _, ctr := range cs {
			_ = rt.StopContainer(ctx, ctr.ID, 0)
			_ = rt.RemoveContainer(ctx, ctr.ID)
		}
	}
	_ = rt.UpdatePodCIDR(ctx, c.podCIDR)
	if sbs, err := rt.ListSandboxes(ctx); err == nil {
		for _, sb := range sbs {
			_ = rt.RemoveSandbox(ctx, sb.ID)
		}
	}
	rt.Close()
	_ = c.daemon.Stop()
	_ = cni.RemoveBridge(cni.BridgeNameFor(c.nodeName))
}

func intOrString(port int32) *metav1.IntOrString {
	return &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: port}}
}

// pod is a pod bound to the cluster's node (as the scheduler would bind it).
func (c *cluster) pod(name string, containers ...*corev1.Container) *corev1.Pod {
	grace := int64(5)
	return &corev1.Pod{ApiVersion: "v1", Kind: "Pod",
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec:     &corev1.PodSpec{NodeName: c.nodeName, Containers: containers, TerminationGracePeriodSeconds: &grace}}
}

func busybox(name string, script string) *corev1.Container {
	return &corev1.Container{Name: name, Image: "skiff-busybox:v1", Command: []string{"sh", "-c", script}}
}

func demo(name string) *corev1.Container {
	return &corev1.Container{Name: name, Image: "skiff-demo:v1", Ports: []*corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}
}

func (c *cluster) create(p *corev1.Pod) *corev1.Pod {
	c.t.Helper()
	obj, err := c.env.Client.Create(context.Background(), p)
	if err != nil {
		c.t.Fatalf("create pod %s: %v", p.GetMetadata().GetName(), err)
	}
	return obj.(*corev1.Pod)
}

func (c *cluster) get(name string) (*corev1.Pod, error) {
	obj, err := c.env.Client.Get(context.Background(), c.pods, "default", name)
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Pod), nil
}

// waitPod waits until cond holds for the pod and returns it.
func (c *cluster) waitPod(name string, timeout time.Duration, what string, cond func(*corev1.Pod) error) *corev1.Pod {
	c.t.Helper()
	var p *corev1.Pod
	nodetest.Eventually(c.t, timeout, fmt.Sprintf("pod %s: %s", name, what), func() error {
		var err error
		if p, err = c.get(name); err != nil {
			return err
		}
		return cond(p)
	})
	return p
}

func running(p *corev1.Pod) error {
	if ph := p.GetStatus().GetPhase(); ph != "Running" {
		return fmt.Errorf("phase %q, status %v", ph, p.GetStatus())
	}
	return nil
}

func ready(p *corev1.Pod) error {
	if err := running(p); err != nil {
		return err
	}
	for _, cond := range p.GetStatus().GetConditions() {
		if cond.Type == "Ready" && cond.Status == "True" {
			return nil
		}
	}
	return fmt.Errorf("not Ready: %v", p.GetStatus().GetConditions())
}

func (c *cluster) delete(name string, grace int64) {
	c.t.Helper()
	_, err := c.env.Client.Delete(context.Background(), c.pods, "default", name, client.DeleteOptions{GracePeriodSeconds: &grace})
	if err != nil {
		c.t.Fatalf("delete %s: %v", name, err)
	}
}

func (c *cluster) waitGone(name string, timeout time.Duration) {
	c.t.Helper()
	nodetest.Eventually(c.t, timeout, "pod "+name+" gone", func() error {
		if _, err := c.get(name); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

// httpGet fetches url from the host (pod IPs are reachable over the node's bridge).
func httpGet(url string) (string, error) {
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// logs reads a container's log through the apiserver.
func (c *cluster) logs(req *corev1.PodLogsRequest) (string, error) {
	if req.Namespace == "" {
		req.Namespace = "default"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.api.Logs(ctx, req)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return b.String(), nil
		}
		if err != nil {
			return b.String(), err
		}
		b.Write(chunk.GetData())
	}
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, cs := range p.GetStatus().GetContainerStatuses() {
		if cs.GetName() == name {
			return cs
		}
	}
	return nil
}
