package kubelet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// TestLogsAndExec: logs (all, --tail, --follow, --previous, over gRPC and REST) and exec (exit
// codes, stdin, stderr) reach the kubelet through the apiserver.
func TestLogsAndExec(t *testing.T) {
	c := startCluster(t)
	c.create(c.pod("talk", busybox("main", `for i in 1 2 3 4 5; do echo line $i; done; while true; do echo tick; sleep 0.2; done`)))
	restarts := c.pod("again", busybox("main", `echo run $(cat /proc/uptime); sleep 0.5; exit 2`))
	c.create(restarts)
	c.waitPod("talk", 60*time.Second, "running", running)

	var all string
	nodetestEventually(t, 10*time.Second, "the log holds the lines and ticks", func() error {
		var err error
		all, err = c.logs(&corev1.PodLogsRequest{Name: "talk"})
		if err != nil || strings.Count(all, "tick") < 3 {
			return fmt.Errorf("%q, %v", all, err)
		}
		return nil
	})
	if !strings.HasPrefix(all, "line 1\nline 2\nline 3\nline 4\nline 5\ntick\n") {
		t.Fatalf("logs: %q", all)
	}
	two := int64(2)
	tail, err := c.logs(&corev1.PodLogsRequest{Name: "talk", TailLines: &two})
	if err != nil || strings.Count(tail, "\n") != 2 || strings.Contains(tail, "line") {
		t.Errorf("--tail 2: %q, %v", tail, err)
	}
	// Follow: more ticks arrive while the stream is open.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	stream, err := c.api.Logs(ctx, &corev1.PodLogsRequest{Namespace: "default", Name: "talk", Follow: true, TailLines: &two})
	if err != nil {
		t.Fatal(err)
	}
	ticks := 0
	for {
		chunk, err := stream.Recv()
		if err != nil {
			break
		}
		ticks += strings.Count(string(chunk.GetData()), "tick")
	}
	cancel()
	if ticks < 5 {
		t.Errorf("--follow for 2s saw %d ticks; the container writes 5 a second", ticks)
	}
	// REST, as kubectl reads it.
	resp, err := http.Get(c.env.HTTPURL + "/api/v1/namespaces/default/pods/talk/log?tailLines=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" || strings.TrimSpace(string(body)) != "tick" {
		t.Errorf("REST log: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	// --previous: the log of the instance before the current one.
	c.waitPod("again", 60*time.Second, "restarted", func(p *corev1.Pod) error {
		if n := containerStatus(p, "main").GetRestartCount(); n < 1 {
			return fmt.Errorf("restartCount %d", n)
		}
		return nil
	})
	prev, err := c.logs(&corev1.PodLogsRequest{Name: "again", Previous: true})
	cur, err2 := c.logs(&corev1.PodLogsRequest{Name: "again"})
	if err != nil || err2 != nil || !strings.HasPrefix(prev, "run ") || prev == cur {
		t.Errorf("--previous %q (%v), current %q (%v): want two different runs", prev, err, cur, err2)
	}
	if _, err := c.logs(&corev1.PodLogsRequest{Name: "talk", Previous: true}); status.Code(err) != codes.NotFound {
		t.Errorf("--previous of a container that never restarted: %v, want NotFound", err)
	}
	if _, err := c.logs(&corev1.PodLogsRequest{Name: "talk", Container: "nope"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("logs of an unknown container: %v, want InvalidArgument", err)
	}
	if _, err := c.logs(&corev1.PodLogsRequest{Name: "nosuchpod"}); status.Code(err) != codes.NotFound {
		t.Errorf("logs of an unknown pod: %v, want NotFound", err)
	}

	out, code := c.exec(t, "talk", "", "sh", "-c", "echo out; echo err >&2; exit 4")
	if code != 4 || !strings.Contains(out, "out") || !strings.Contains(out, "err") {
		t.Errorf("exec: %q exit %d, want out, err and 4", out, code)
	}
	// stdin reaches the command; its end closes the command's stdin.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex, err := c.api.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = ex.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_Start{Start: &corev1.ExecStart{Namespace: "default", Name: "talk", Command: []string{"tr", "a-z", "A-Z"}, Stdin: true}}})
	_ = ex.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_Stdin{Stdin: []byte("hello stdin\n")}})
	_ = ex.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_CloseStdin{CloseStdin: true}})
	var got strings.Builder
	for {
		m, err := ex.Recv()
		if err != nil {
			t.Fatalf("exec with stdin: %v (so far %q)", err, got.String())
		}
		got.Write(m.GetStdout())
		if m.ExitCode != nil {
			break
		}
	}
	if got.String() != "HELLO STDIN\n" {
		t.Errorf("exec with stdin: %q", got.String())
	}
}

// TestDeletedPodLeavesNothing: once deleted pods are gone, containerd holds none of their
// containers, tasks or snapshots, no network namespace or sandbox file is left, their
// addresses are released, and their logs and volumes are removed.
func TestDeletedPodLeavesNothing(t *testing.T) {
	c := startCluster(t)
	for _, name := range []string{"a", "b"} {
		p := c.pod(name, demo("web"), busybox("side", "exec sleep 3600"))
		p.Spec.Volumes = []*corev1.Volume{{Name: "scratch", EmptyDir: &corev1.EmptyDirVolumeSource{}}}
		p.Spec.Containers[1].VolumeMounts = []*corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
		c.create(p)
	}
	a := c.waitPod("a", 60*time.Second, "running", running)
	c.waitPod("b", 60*time.Second, "running", running)
	c.delete("a", 1)
	c.delete("b", 0) // force: removed at once, the kubelet cleans up behind it
	c.waitGone("a", 30*time.Second)
	c.waitGone("b", 30*time.Second)

	nodetestEventually(t, 30*time.Second, "nothing left", func() error {
		ctx := context.Background()
		if cs, _ := c.rt.ListContainers(ctx); len(cs) != 0 {
			return fmt.Errorf("%d containers left", len(cs))
		}
		if sbs, _ := c.rt.ListSandboxes(ctx); len(sbs) != 0 {
			return fmt.Errorf("%d sandboxes left", len(sbs))
		}
		for _, dir := range []string{"rt/netns", "rt/sandboxes", "kubelet/pods", "kubelet/logs"} {
			if left, _ := os.ReadDir(filepath.Join(c.dir, dir)); len(left) != 0 {
				return fmt.Errorf("%s holds %d entries", dir, len(left))
			}
		}
		// host-local keeps one file per leased address (plus its own bookkeeping).
		leases, _ := filepath.Glob(filepath.Join(c.dir, "cni", "ipam", "*", "10.*"))
		if len(leases) != 0 {
			return fmt.Errorf("addresses still leased: %v", leases)
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mounts), filepath.Join(c.dir, "rt", "netns")) {
			return fmt.Errorf("a network namespace is still mounted")
		}
		return nil
	})
	// containerd's own view: no task and no snapshot of the kubelet's namespace is left.
	ctrState, err := c.rt.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ctrState.Tasks != 0 || ctrState.Snapshots != 0 || ctrState.Containers != 0 {
		t.Errorf("containerd still holds %+v", ctrState)
	}
	if _, err := httpGet("http://" + a.GetStatus().GetPodIp() + ":8080/"); err == nil {
		t.Errorf("the deleted pod's IP still answers")
	}
}
