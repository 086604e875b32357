package kubelet_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

func env(name, value string) *corev1.EnvVar { return &corev1.EnvVar{Name: name, Value: value} }

func fieldEnv(name, path string) *corev1.EnvVar {
	return &corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
}

// TestPodRunsAndAnswersOnItsIP: a pod of the demo image and a busybox sidecar gets an IP from
// the node's CIDR, answers HTTP there with its name (its hostname), shares one network
// namespace between its containers, and gets its env, args, fieldRefs, hosts and resolv.conf.
func TestPodRunsAndAnswersOnItsIP(t *testing.T) {
	c := startCluster(t)
	side := &corev1.Container{Name: "side", Image: "skiff-busybox:v1", Command: []string{"sh", "-c"},
		Args: []string{`echo "args: $0 $1"; echo "GREETING=$GREETING NAME=$MY_NAME NS=$MY_NS IP=$MY_IP NODE=$MY_NODE REF=$REF"; cat /etc/resolv.conf /etc/hosts; exec sleep 3600`,
			"first-arg", "$(GREETING)-expanded"},
		Env: []*corev1.EnvVar{env("GREETING", "hello"), fieldEnv("MY_NAME", "metadata.name"), fieldEnv("MY_NS", "metadata.namespace"),
			fieldEnv("MY_IP", "status.podIP"), fieldEnv("MY_NODE", "spec.nodeName"), env("REF", "$(MY_NAME)/$(GREETING)")},
		WorkingDir: "/tmp"}
	c.create(c.pod("web", demo("web"), side))
	p := c.waitPod("web", 60*time.Second, "running", running)

	ip := p.GetStatus().GetPodIp()
	_, cidr, _ := net.ParseCIDR(c.podCIDR)
	if !cidr.Contains(net.ParseIP(ip)) || len(p.GetStatus().GetPodIps()) != 1 || p.GetStatus().GetPodIps()[0].GetIp() != ip {
		t.Fatalf("podIP %q / podIPs %v: want one address in %s", ip, p.GetStatus().GetPodIps(), c.podCIDR)
	}
	if p.GetStatus().GetHostIp() != "127.0.0.1" || p.GetStatus().GetStartTime() == "" || p.GetStatus().GetQosClass() != "BestEffort" {
		t.Errorf("hostIP %q startTime %q qosClass %q", p.GetStatus().GetHostIp(), p.GetStatus().GetStartTime(), p.GetStatus().GetQosClass())
	}
	var body string
	var err error
	for range 100 { // up to 10 s: a loaded CI machine
		if body, err = httpGet("http://" + net.JoinHostPort(ip, "8080") + "/"); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || body != "web" {
		t.Fatalf("GET / on the pod IP: %q, %v; want the pod's name", body, err)
	}

	want := []string{"args: first-arg hello-expanded",
		fmt.Sprintf("GREETING=hello NAME=web NS=default IP=%s NODE=%s REF=web/hello", ip, c.nodeName),
		"search default.svc.cluster.local svc.cluster.local cluster.local", "nameserver 10.96.0.10", "options ndots:5",
		ip + "\tweb"}
	var logs string
	for range 100 {
		if logs, err = c.logs(&corev1.PodLogsRequest{Name: "web", Container: "side"}); err == nil && strings.Contains(logs, ip+"\tweb") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range want {
		if !strings.Contains(logs, w) {
			t.Errorf("sidecar output lacks %q:\n%s", w, logs)
		}
	}
	// The sidecar reaches the web container on localhost: one network namespace.
	out, code := c.exec(t, "web", "side", "wget", "-qO-", "http://127.0.0.1:8080/")
	if code != 0 || strings.TrimSpace(out) != "web" {
		t.Errorf("wget localhost:8080 from the sidecar: exit %d, %q", code, out)
	}
	if out, _ := c.exec(t, "web", "side", "pwd"); strings.TrimSpace(out) != "/tmp" {
		t.Errorf("workingDir: pwd says %q", out)
	}
	if cs := containerStatus(p, "web"); cs == nil || !cs.GetReady() || cs.GetState().GetRunning() == nil ||
		!strings.HasPrefix(cs.GetContainerId(), "containerd://") || cs.GetImageId() == "" || cs.GetRestartCount() != 0 {
		t.Errorf("web's status: %v", cs)
	}
}

// exec runs a command in a container through the apiserver and returns its output and code.
func (c *cluster) exec(t *testing.T, pod, container string, cmd ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := c.api.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_Start{Start: &corev1.ExecStart{
		Namespace: "default", Name: pod, Container: container, Command: cmd}}}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("exec %v: %v", cmd, err)
		}
		out.Write(m.GetStdout())
		out.Write(m.GetStderr())
		if m.ExitCode != nil {
			return out.String(), int(m.GetExitCode())
		}
	}
}
