package kubelet_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"

	"github.com/skiff-project/skiff/node/kubelet/kubelet"
)

// TestRestartPolicies: a failing container restarts with back-off (CrashLoopBackOff, restart
// count, last state); OnFailure leaves a successful container Completed (Succeeded); Never
// leaves a failed one Error (Failed).
func TestRestartPolicies(t *testing.T) {
	c := startCluster(t)
	c.create(c.pod("crash", busybox("main", "echo attempt; exit 1")))
	onFailure := c.pod("done", busybox("main", "exit 0"))
	onFailure.Spec.RestartPolicy = "OnFailure"
	c.create(onFailure)
	never := c.pod("fail", busybox("main", "exit 3"))
	never.Spec.RestartPolicy = "Never"
	c.create(never)

	sawBackOff := false
	p := c.waitPod("crash", 60*time.Second, "restarted twice in CrashLoopBackOff", func(p *corev1.Pod) error {
		cs := containerStatus(p, "main")
		if w := cs.GetState().GetWaiting(); w != nil && w.Reason == "CrashLoopBackOff" {
			sawBackOff = true
		}
		if cs.GetRestartCount() < 2 || !sawBackOff {
			return fmt.Errorf("restartCount %d, state %v, back-off seen %v", cs.GetRestartCount(), cs.GetState(), sawBackOff)
		}
		return nil
	})
	cs := containerStatus(p, "main")
	if last := cs.GetLastState().GetTerminated(); last == nil || last.ExitCode != 1 || last.Reason != "Error" {
		t.Errorf("lastState %v: want terminated, exit 1, reason Error", cs.GetLastState())
	}
	if p.GetStatus().GetPhase() != "Running" {
		t.Errorf("a crash-looping pod with restartPolicy Always is Running, got %s", p.GetStatus().GetPhase())
	}
	// The back-off grows: the gaps between starts are not all the same (1 s, 2 s, 4 s here).
	c.waitPod("done", 30*time.Second, "Succeeded", func(p *corev1.Pod) error {
		t := containerStatus(p, "main").GetState().GetTerminated()
		if p.GetStatus().GetPhase() != "Succeeded" || t == nil || t.Reason != "Completed" || t.ExitCode != 0 {
			return fmt.Errorf("phase %s, state %v", p.GetStatus().GetPhase(), containerStatus(p, "main").GetState())
		}
		return nil
	})
	p = c.waitPod("fail", 30*time.Second, "Failed", func(p *corev1.Pod) error {
		t := containerStatus(p, "main").GetState().GetTerminated()
		if p.GetStatus().GetPhase() != "Failed" || t == nil || t.Reason != "Error" || t.ExitCode != 3 {
			return fmt.Errorf("phase %s, state %v", p.GetStatus().GetPhase(), containerStatus(p, "main").GetState())
		}
		return nil
	})
	if n := containerStatus(p, "main").GetRestartCount(); n != 0 {
		t.Errorf("restartPolicy Never restarted %d times", n)
	}
}

// TestBackoffGrows: starts of a crash-looping container come further and further apart.
func TestBackoffGrows(t *testing.T) {
	c := startCluster(t)
	dir := t.TempDir()
	p := c.pod("loop", busybox("main", "cut -d' ' -f1 /proc/uptime >> /out/starts; exit 1"))
	p.Spec.Volumes = []*corev1.Volume{{Name: "out", HostPath: &corev1.HostPathVolumeSource{Path: dir}}}
	p.Spec.Containers[0].VolumeMounts = []*corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	c.create(p)
	var starts []float64
	nodetestEventually(t, 60*time.Second, "4 starts", func() error {
		starts = readFloats(filepath.Join(dir, "starts"))
		if len(starts) < 4 {
			return fmt.Errorf("%d starts", len(starts))
		}
		return nil
	})
	// Back-off base 1 s doubling (the test's kubelet): restart 1 at once, then >= 1 s, >= 2 s.
	gap1, gap2 := starts[2]-starts[1], starts[3]-starts[2]
	if gap1 < 0.9 || gap2 < 1.9 {
		t.Errorf("gaps between starts %.2fs, %.2fs: want the back-off (>= 1 s, then >= 2 s)", gap1, gap2)
	}
}

// uptime is the host's /proc/uptime: the clock containers can read too.
func uptime(t *testing.T) float64 {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return v
}

func readFloats(path string) []float64 {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []float64
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, err := strconv.ParseFloat(strings.TrimSpace(s.Text()), 64); err == nil {
			out = append(out, v)
		}
	}
	return out
}

// TestLivenessFailureRestarts: a container whose liveness probe starts failing is killed and
// restarted; one whose readiness probe fails stays Running but not Ready.
func TestProbes(t *testing.T) {
	c := startCluster(t)
	live := c.pod("live", busybox("main", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600"))
	live.Spec.Containers[0].LivenessProbe = &corev1.Probe{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/healthy"}},
		PeriodSeconds: 1, FailureThreshold: 2, TimeoutSeconds: 1, SuccessThreshold: 1}
	c.create(live)

	good := c.pod("ready", demo("web"))
	good.Spec.Containers[0].ReadinessProbe = &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/healthz",
		Port: &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: "http"}}}, PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1}
	c.create(good)
	bad := c.pod("unready", demo("web"))
	bad.Spec.Containers[0].ReadinessProbe = &corev1.Probe{HttpGet: &corev1.HTTPGetAction{Path: "/nope", Port: intOrString(8080)},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1}
	c.create(bad)
	tcp := c.pod("tcp", demo("web"))
	tcp.Spec.Containers[0].ReadinessProbe = &corev1.Probe{TcpSocket: &corev1.TCPSocketAction{Port: intOrString(8080)},
		PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1}
	c.create(tcp)

	c.waitPod("ready", 30*time.Second, "Ready (HTTP probe passes)", ready)
	c.waitPod("tcp", 30*time.Second, "Ready (TCP probe passes)", ready)
	p := c.waitPod("unready", 30*time.Second, "Running", running)
	time.Sleep(3 * time.Second) // several failed probes
	if p, _ = c.get("unready"); ready(p) == nil || containerStatus(p, "web").GetReady() {
		t.Errorf("a container whose readiness probe fails is Ready: %v", p.GetStatus())
	}
	c.waitPod("live", 60*time.Second, "restarted after liveness failures", func(p *corev1.Pod) error {
		if n := containerStatus(p, "main").GetRestartCount(); n < 1 {
			return fmt.Errorf("restartCount %d", n)
		}
		return nil
	})
}

// TestMemoryLimitOOMKilled: a container over its memory limit is killed by the kernel and
// reported OOMKilled (exit 137).
func TestMemoryLimitOOMKilled(t *testing.T) {
	c := startCluster(t)
	p := c.pod("oom", busybox("main", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"))
	p.Spec.RestartPolicy = "Never"
	p.Spec.Containers[0].Resources = &corev1.ResourceRequirements{Limits: map[string]string{"memory": "16Mi", "cpu": "500m"}}
	c.create(p)
	p = c.waitPod("oom", 60*time.Second, "OOMKilled", func(p *corev1.Pod) error {
		term := containerStatus(p, "main").GetState().GetTerminated()
		if term == nil || term.Reason != "OOMKilled" {
			return fmt.Errorf("state %v", containerStatus(p, "main").GetState())
		}
		return nil
	})
	if term := containerStatus(p, "main").GetState().GetTerminated(); term.ExitCode != 137 || p.GetStatus().GetPhase() != "Failed" {
		t.Errorf("OOM kill: exit %d phase %s, want 137 and Failed", term.ExitCode, p.GetStatus().GetPhase())
	}
	if p.GetStatus().GetQosClass() != "Guaranteed" {
		t.Errorf("qosClass %s, want Guaranteed (limits only: requests default to them)", p.GetStatus().GetQosClass())
	}
}

// TestGracefulDeletion: a deleted pod's container gets SIGTERM and runs on through its grace
// period; one that ignores SIGTERM is killed after the grace period; the kubelet then
// confirms and the pod goes away.
func TestGracefulDeletion(t *testing.T) {
	c := startCluster(t)
	dir := t.TempDir()
	vol := []*corev1.Volume{{Name: "out", HostPath: &corev1.HostPathVolumeSource{Path: dir}}}
	mount := []*corev1.VolumeMount{{Name: "out", MountPath: "/out"}}
	polite := c.pod("polite", busybox("main", `trap 'echo TERM > /out/polite; exit 0' TERM; while true; do sleep 0.1; done`))
	polite.Spec.Volumes, polite.Spec.Containers[0].VolumeMounts = vol, mount
	stubborn := c.pod("stubborn", busybox("main", `trap 'echo TERM >> /out/stubborn' TERM; while true; do cut -d' ' -f1 /proc/uptime >> /out/tick; sleep 0.1; done`))
	stubborn.Spec.Volumes, stubborn.Spec.Containers[0].VolumeMounts = vol, mount
	c.create(polite)
	c.create(stubborn)
	c.waitPod("polite", 60*time.Second, "running", running)
	c.waitPod("stubborn", 60*time.Second, "running", running)
	time.Sleep(500 * time.Millisecond) // the traps are set

	c.delete("polite", 30)
	c.waitGone("polite", 30*time.Second)
	if b, _ := os.ReadFile(filepath.Join(dir, "polite")); strings.TrimSpace(string(b)) != "TERM" {
		t.Errorf("the polite container did not get SIGTERM (it writes TERM on it): %q", b)
	}

	deleted := uptime(t)
	c.delete("stubborn", 3)
	c.waitGone("stubborn", 30*time.Second)
	b, _ := os.ReadFile(filepath.Join(dir, "stubborn"))
	if strings.TrimSpace(string(b)) != "TERM" {
		t.Errorf("the stubborn container did not get SIGTERM: %q", b)
	}
	ticks := readFloats(filepath.Join(dir, "tick"))
	if len(ticks) == 0 || ticks[len(ticks)-1]-deleted < 2.5 {
		t.Errorf("the stubborn container's last tick: %v, the delete at %.2f; it should run on through the 3 s grace period", ticks[max(0, len(ticks)-3):], deleted)
	}
}

// TestKubeletRestartAdoptsPods: a restarted kubelet adopts the containers it runs (same
// container, no restart, no duplicate) and removes those of a pod deleted while it was down.
func TestKubeletRestartAdoptsPods(t *testing.T) {
	c := startCluster(t)
	c.create(c.pod("keep", demo("web")))
	c.create(c.pod("gone", busybox("main", "exec sleep 3600")))
	keep := c.waitPod("keep", 60*time.Second, "running", running)
	c.waitPod("gone", 60*time.Second, "running", running)
	before := containerStatus(keep, "web").GetContainerId()

	c.stopKubelet()
	// Deleted while the kubelet is down: grace 0 removes the object at once.
	c.delete("gone", 0)
	c.waitGone("gone", 10*time.Second)
	c.startKubelet(c.newRuntime())

	nodetestEventually(t, 30*time.Second, "the deleted pod's containers and sandbox removed", func() error {
		cs, _ := c.rt.ListContainers(context.Background())
		sbs, _ := c.rt.ListSandboxes(context.Background())
		for _, x := range cs {
			if x.Pod.Name == "gone" {
				return fmt.Errorf("container %s of gone still there", x.ID)
			}
		}
		for _, x := range sbs {
			if x.Pod.Name == "gone" {
				return fmt.Errorf("sandbox %s of gone still there", x.ID)
			}
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a resync or two after the restart
	keep, _ = c.get("keep")
	cs := containerStatus(keep, "web")
	if cs.GetContainerId() != before || cs.GetRestartCount() != 0 || keep.GetStatus().GetPhase() != "Running" {
		t.Errorf("after the kubelet restart: container %s restarts %d phase %s; want %s adopted, 0, Running",
			cs.GetContainerId(), cs.GetRestartCount(), keep.GetStatus().GetPhase(), before)
	}
	all, _ := c.rt.ListContainers(context.Background())
	sbs, _ := c.rt.ListSandboxes(context.Background())
	if len(all) != 1 || len(sbs) != 1 {
		t.Errorf("runtime has %d containers and %d sandboxes, want 1 and 1 (no duplicates)", len(all), len(sbs))
	}
	if body, err := httpGet("http://" + keep.GetStatus().GetPodIp() + ":8080/"); err != nil || body != "keep" {
		t.Errorf("adopted pod answers %q, %v", body, err)
	}
}

// TestTerminationsHoldNoWorker: pods in their grace period do not stop other pods from
// starting, even with fewer workers than terminating pods.
func TestTerminationsHoldNoWorker(t *testing.T) {
	c := startCluster(t, func(cfg *kubelet.Config) { cfg.Workers = 1 })
	for _, name := range []string{"slow-1", "slow-2"} {
		c.create(c.pod(name, busybox("main", `trap '' TERM; while true; do sleep 0.2; done`)))
	}
	c.waitPod("slow-1", 60*time.Second, "running", running)
	c.waitPod("slow-2", 60*time.Second, "running", running)
	c.delete("slow-1", 30)
	c.delete("slow-2", 30)
	time.Sleep(500 * time.Millisecond) // both terminations under way
	c.create(c.pod("fresh", busybox("main", "exec sleep 3600")))
	c.waitPod("fresh", 20*time.Second, "running while two pods wait out their 30 s grace period", running)
	for _, name := range []string{"slow-1", "slow-2"} {
		if _, err := c.get(name); err != nil {
			t.Errorf("%s is gone before its grace period ended: %v", name, err)
		}
	}
	// A later delete shortens the grace period, and the kubelet honours it: the pods go well
	// before their first 30 s are up.
	c.delete("slow-1", 1)
	c.delete("slow-2", 1)
	c.waitGone("slow-1", 15*time.Second)
	c.waitGone("slow-2", 15*time.Second)
}
