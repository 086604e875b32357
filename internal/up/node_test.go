package up

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/cli"
	"github.com/skiff-project/skiff/internal/nodetest"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"

	"github.com/skiff-project/skiff/node/kubelet/cni"
)

// skiff runs the CLI against server and returns what it printed.
func skiff(t *testing.T, server string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code := cli.Execute(context.Background(), cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out},
		append([]string{"--server", server}, args...))
	return out.String(), code
}

// TestUpRunsLocalNode: `skiff up` starts a containerd of its own and a kubelet; `skiff image
// load` reaches that node through the apiserver; a pod is scheduled there and runs; `skiff
// logs` and `skiff exec` work; stopping skiff up leaves no container process behind.
func TestUpRunsLocalNode(t *testing.T) {
	nodetest.RequireRoot(t)
	images := nodetest.Images(t)
	dir := nodetest.ShortTempDir(t)
	node := "up-" + filepath.Base(dir)[2:]
	var banner bytes.Buffer
	o := Options{DataDir: filepath.Join(dir, "d"), HTTPAddr: freeAddr(t), GRPCAddr: freeAddr(t), EtcdAddr: "127.0.0.1:0",
		NATSAddr: "127.0.0.1:0", Stream: bus.DefaultStreamConfig(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Out: &banner, LocalNode: true, NodeName: node, PodCIDR: nodetest.PodCIDR(t)}
	t.Cleanup(func() { _ = cni.RemoveBridge(cni.BridgeNameFor(node)) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("skiff up: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("skiff up did not stop in 60s")
		}
	}
	defer stop()

	server := o.GRPCAddr
	c, err := client.New(server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	nodes, _ := c.Scheme().ForName("nodes")
	pods, _ := c.Scheme().ForName("pods")
	nodetest.Eventually(t, 60*time.Second, "the local node Ready", func() error {
		obj, err := c.Get(context.Background(), nodes, "", node)
		if err != nil {
			return err
		}
		for _, cond := range obj.(*corev1.Node).GetStatus().GetConditions() {
			if cond.GetType() == "Ready" && cond.GetStatus() == "True" {
				return nil
			}
		}
		return fmt.Errorf("not Ready")
	})
	if !strings.Contains(banner.String(), "Node:  "+node+" (containerd ") {
		t.Errorf("banner lacks the node line:\n%s", banner.String())
	}
	if out, code := skiff(t, server, "image", "load", images.Busybox); code != 0 || !strings.Contains(out, "Loaded docker.io/library/skiff-busybox:v1 on node "+node) {
		t.Fatalf("skiff image load: exit %d: %s", code, out)
	}
	p := &corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "hello", Namespace: "default"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "main", Image: "skiff-busybox:v1",
			Command: []string{"sh", "-c", "echo hello from $(hostname); exec sleep 3600"}}}}}
	if _, err := c.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 60*time.Second, "the pod scheduled to the local node and Running", func() error {
		obj, err := c.Get(context.Background(), pods, "default", "hello")
		if err != nil {
			return err
		}
		pod := obj.(*corev1.Pod)
		if pod.GetSpec().GetNodeName() != node || pod.GetStatus().GetPhase() != "Running" {
			return fmt.Errorf("node %q phase %q", pod.GetSpec().GetNodeName(), pod.GetStatus().GetPhase())
		}
		return nil
	})
	nodetest.Eventually(t, 10*time.Second, "skiff logs", func() error {
		if out, code := skiff(t, server, "logs", "hello"); code != 0 || out != "hello from hello\n" {
			return fmt.Errorf("exit %d: %q", code, out)
		}
		return nil
	})
	if out, code := skiff(t, server, "exec", "hello", "--", "sh", "-c", "echo out; exit 3"); code != 3 || !strings.HasPrefix(out, "out\n") {
		t.Errorf("skiff exec: exit %d: %q, want 3 and out", code, out)
	}
	if out, code := skiff(t, server, "exec", "hello"); code == 0 || !strings.Contains(out, "--") {
		t.Errorf("skiff exec without a command: exit %d: %q", code, out)
	}

	socket := filepath.Join(o.DataDir, "containerd", "containerd.sock")
	stop()
	if left := shimsOf(socket); len(left) > 0 {
		t.Errorf("container shims of the stopped node still run: %v", left)
	}
	if _, err := net.InterfaceByName(cni.BridgeNameFor(node)); err == nil {
		t.Errorf("the node's bridge %s is still there", cni.BridgeNameFor(node))
	}
}

// shimsOf lists the PIDs of containerd shims serving the containerd at socket.
func shimsOf(socket string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if s := string(cmd); strings.Contains(s, "containerd-shim") && strings.Contains(s, socket) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
