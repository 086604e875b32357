package containerd_test

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

	"github.com/skiff-project/skiff/internal/nodetest"
	"github.com/skiff-project/skiff/node/kubelet/cni"
	"github.com/skiff-project/skiff/node/kubelet/runtime"
	ctrd "github.com/skiff-project/skiff/node/kubelet/runtime/containerd"
)

// TestSandboxAndContainerLifecycle drives the runtime directly: a sandbox with a pod IP, a
// container that writes, logs, exec, stop with a grace period, and removal leaving nothing.
func TestSandboxAndContainerLifecycle(t *testing.T) {
	nodetest.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	images := nodetest.Images(t)
	dir := nodetest.ShortTempDir(t)
	d, err := ctrd.StartDaemon(ctx, ctrd.DaemonConfig{Dir: filepath.Join(dir, "ctrd")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	cidr := nodetest.PodCIDR(t)
	netw, err := cni.New(cni.Config{NodeName: "rt-" + filepath.Base(dir), PodCIDR: cidr, DataDir: filepath.Join(dir, "cni")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cni.RemoveBridge(netw.Bridge) })
	rt, err := ctrd.New(ctx, ctrd.Config{Address: d.Address, StateDir: filepath.Join(dir, "state"), Network: netw,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	t.Cleanup(func() {
		// A failed test leaves nothing running either.
		ctx := context.Background()
		cs, _ := rt.ListContainers(ctx)
		for _, c := range cs {
			_ = rt.StopContainer(ctx, c.ID, 0)
			_ = rt.RemoveContainer(ctx, c.ID)
		}
		sbs, _ := rt.ListSandboxes(ctx)
		for _, sb := range sbs {
			_ = rt.RemoveSandbox(ctx, sb.ID)
		}
	})
	f, err := os.Open(images.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	imported, err := rt.ImportImages(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(imported) != 1 || imported[0].Name != "docker.io/library/skiff-busybox:v1" {
		t.Fatalf("imported %+v, want docker.io/library/skiff-busybox:v1", imported)
	}

	pod := runtime.PodRef{UID: "uid-1", Namespace: "default", Name: "p1"}
	sb, err := rt.RunSandbox(ctx, runtime.SandboxConfig{Pod: pod, Hostname: "p1",
		DNS: runtime.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}, Options: []string{"ndots:5"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, ipnet, _ := net.ParseCIDR(cidr)
	if !ipnet.Contains(net.ParseIP(sb.IP)) {
		t.Fatalf("sandbox IP %s not in %s", sb.IP, cidr)
	}
	logPath := filepath.Join(dir, "logs", "c1.log")
	_ = os.MkdirAll(filepath.Dir(logPath), 0o755)
	id, err := rt.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c1", Image: imported[0].Name,
		Command: []string{"sh", "-c"}, Args: []string{`trap 'echo got TERM; exit 3' TERM; echo hello $GREETING; hostname; cat /etc/resolv.conf; while true; do sleep 0.1; done`},
		Env: []string{"GREETING=world"}, LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	nodetest.Eventually(t, 20*time.Second, "log shows output", func() error {
		var b bytes.Buffer
		if err := rt.Logs(ctx, id, runtime.LogOptions{TailLines: -1}, &b); err != nil {
			return err
		}
		for _, want := range []string{"hello world", "\np1\n", "nameserver 10.96.0.10", "search default.svc.cluster.local", "options ndots:5"} {
			if !strings.Contains("\n"+b.String(), want) {
				return fmt.Errorf("log %q lacks %q", b.String(), want)
			}
		}
		return nil
	})
	var out bytes.Buffer
	code, err := rt.Exec(ctx, id, runtime.ExecOptions{Cmd: []string{"sh", "-c", "ip -4 addr; exit 7"}, Stdout: &out, Stderr: &out})
	if err != nil || code != 7 || !strings.Contains(out.String(), sb.IP) {
		t.Fatalf("exec: code %d err %v output %q (want 7 and the pod IP %s)", code, err, out.String(), sb.IP)
	}
	if err := rt.StopContainer(ctx, id, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cs, err := rt.ListContainers(ctx)
	if err != nil || len(cs) != 1 {
		t.Fatalf("list: %v %+v", err, cs)
	}
	if c := cs[0]; c.State != runtime.ContainerExited || c.ExitCode != 3 || c.Pod != pod || c.Name != "c1" {
		t.Fatalf("after SIGTERM: %+v, want exited with 3 (the TERM trap ran)", c)
	}
	if err := rt.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if cs, _ := rt.ListContainers(ctx); len(cs) != 0 {
		t.Fatalf("containers left: %+v", cs)
	}
	if sbs, _ := rt.ListSandboxes(ctx); len(sbs) != 0 {
		t.Fatalf("sandboxes left: %+v", sbs)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "state", "netns")); len(left) != 0 {
		t.Fatalf("network namespaces left: %v", left)
	}
}
