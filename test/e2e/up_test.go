package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/skiff-project/skiff/internal/cli"
	"github.com/skiff-project/skiff/internal/imagebuild"
	"github.com/skiff-project/skiff/internal/nodetest"
	"github.com/skiff-project/skiff/internal/up"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/test/e2e/internal/proc"
)

// skiffUp is `skiff up` run as the user runs it: the skiff binary, a process of its own, with
// its data, ports, pod and service ranges chosen so that it shares the machine with anything
// else (another `skiff up`, other tests).
type skiffUp struct {
	t        *testing.T
	cmd      *exec.Cmd
	done     chan struct{}
	out      *syncBuffer // stdout: the banner
	logPath  string
	dataDir  string
	grpcAddr string
	node     string
	client   client.Interface
}

// syncBuffer is a bytes.Buffer safe for the process's writer and the test's reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	skiffBuildOnce sync.Once
	skiffBin       string
	skiffBuildErr  error
)

// buildSkiff builds ./cmd/skiff once per test process.
func buildSkiff(t testing.TB) string {
	t.Helper()
	skiffBuildOnce.Do(func() {
		root, err := nodetest.ModuleRoot()
		if err != nil {
			skiffBuildErr = err
			return
		}
		skiffBin = filepath.Join(binDir, "skiff")
		cmd := exec.Command("go", "build", "-o", skiffBin, "./cmd/skiff")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			skiffBuildErr = fmt.Errorf("go build ./cmd/skiff: %v\n%s", err, out)
		}
	})
	if skiffBuildErr != nil {
		t.Fatal(skiffBuildErr)
	}
	return skiffBin
}

// upImages is the image directory a test's `skiff up` preloads: the demo and busybox images
// of `make images`, and skiff-demo:v2 (the same server, another image) for a rolling update.
func upImages(t *testing.T) string {
	t.Helper()
	imgs := nodetest.Images(t)
	dir := t.TempDir()
	for _, src := range []string{imgs.Demo, imgs.Busybox} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img, err := tarball.ImageFromPath(imgs.Demo, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Env = append(append([]string(nil), cfg.Env...), "DEMO_VERSION=v2")
	cfg.Labels = map[string]string{"version": "v2"}
	v2, err := mutate.Config(img, *cfg.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	if err := imagebuild.WriteTar(filepath.Join(dir, "demo-v2.tar"), "skiff-demo:v2", v2); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startUp runs `skiff up` with a local node on free ports, a pod range and a service range no
// interface or other run uses, and the images of upImages; it returns once the node is Ready.
func startUp(t *testing.T) *skiffUp {
	t.Helper()
	nodetest.RequireRoot(t)
	bin := buildSkiff(t)
	images := upImages(t)
	dir := nodetest.ShortTempDir(t)
	port := func() string {
		p, err := proc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(p)
	}
	u := &skiffUp{t: t, done: make(chan struct{}), out: &syncBuffer{}, logPath: filepath.Join(dir, "skiff-up.log"),
		dataDir: filepath.Join(dir, "d"), grpcAddr: "127.0.0.1:" + port(), node: "e2e-" + filepath.Base(dir)[2:]}
	// A /24 of 10.120.0.0/14 for Services: the default 10.96.0.0/12 may be a user's `skiff up`
	// on this machine, whose proxy (also at the cgroup2 root) refuses addresses it does not know.
	svcRange := fmt.Sprintf("10.%d.%d.0/24", 120+rand.IntN(4), rand.IntN(256))
	logf, err := os.Create(u.logPath)
	if err != nil {
		t.Fatal(err)
	}
	u.cmd = exec.Command(bin, "up", "--data-dir", u.dataDir, "--http-addr", "127.0.0.1:"+port(), "--grpc-addr", u.grpcAddr,
		"--etcd-addr", "127.0.0.1:"+port(), "--nats-addr", "127.0.0.1:"+port(), "--dns-addr", "0.0.0.0:"+port(),
		"--node-name", u.node, "--pod-cidr", nodetest.PodCIDR(t), "--service-cluster-ip-range", svcRange,
		"--images", images)
	u.cmd.Stdout, u.cmd.Stderr = u.out, logf
	// If the test binary dies, so does skiff up (its pods are then left to the next cleanup).
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = u.cmd.Wait(); logf.Close(); close(u.done) }()
	t.Cleanup(func() {
		u.stop()
		if t.Failed() {
			t.Logf("skiff up's banner:\n%s\nlast lines of its log:\n%s", u.out.String(), tail(u.logPath, 40))
		}
	})
	c, err := client.New(u.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	u.client = c
	u.eventually(90*time.Second, "the local node Ready", func() error {
		select {
		case <-u.done:
			return errors.New("skiff up exited")
		default:
		}
		obj, err := c.Get(context.Background(), u.kind("nodes"), "", u.node)
		if err != nil {
			return err
		}
		for _, cond := range obj.(*corev1.Node).GetStatus().GetConditions() {
			if cond.GetType() == "Ready" && cond.GetStatus() == "True" {
				return nil
			}
		}
		return errors.New("not Ready")
	})
	return u
}

// stop sends SIGTERM, as Ctrl-C does, and waits for a clean exit.
func (u *skiffUp) stop() error {
	select {
	case <-u.done:
		return nil
	default:
	}
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(90 * time.Second):
		_ = u.cmd.Process.Kill()
		<-u.done
		return errors.New("skiff up did not stop within 90s of SIGTERM")
	}
	if !u.cmd.ProcessState.Success() {
		return fmt.Errorf("skiff up exited with %v", u.cmd.ProcessState)
	}
	return nil
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (u *skiffUp) kind(name string) *scheme.Kind {
	k, err := scheme.Default().ForName(name)
	if err != nil {
		u.t.Fatal(err)
	}
	return k
}

func (u *skiffUp) eventually(timeout time.Duration, what string, cond func() error) {
	u.t.Helper()
	nodetest.Eventually(u.t, timeout, what, cond)
}

// skiff runs the CLI (the same code as the binary) against this cluster.
func (u *skiffUp) skiff(args ...string) (string, error) {
	var out bytes.Buffer
	code := cli.Execute(context.Background(), cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out},
		append([]string{"--server", u.grpcAddr}, args...))
	if code != 0 {
		return out.String(), fmt.Errorf("skiff %s: exit %d: %s", strings.Join(args, " "), code, out.String())
	}
	return out.String(), nil
}

func (u *skiffUp) mustSkiff(args ...string) string {
	u.t.Helper()
	out, err := u.skiff(args...)
	if err != nil {
		u.t.Fatal(err)
	}
	return out
}

// demoPods lists the pods of app=demo.
func (u *skiffUp) demoPods() []*corev1.Pod {
	u.t.Helper()
	l, err := u.client.List(context.Background(), u.kind("pods"), "default", client.ListOptions{LabelSelector: "app=demo"})
	if err != nil {
		u.t.Fatal(err)
	}
	var pods []*corev1.Pod
	for _, o := range l.Items {
		pods = append(pods, o.(*corev1.Pod))
	}
	return pods
}

// readyDemo checks that exactly n demo pods exist, none terminating, all Running and Ready on
// the local node (of image, when given), and that the Service's Endpoints list exactly them.
func (u *skiffUp) readyDemo(n int, image string) error {
	pods := u.demoPods()
	if len(pods) != n {
		return fmt.Errorf("%d demo pods, want %d", len(pods), n)
	}
	ips := map[string]bool{}
	for _, p := range pods {
		name := p.GetMetadata().GetName()
		if p.GetMetadata().GetDeletionTimestamp() != "" {
			return fmt.Errorf("pod %s terminating", name)
		}
		if p.GetSpec().GetNodeName() != u.node || p.GetStatus().GetPhase() != "Running" {
			return fmt.Errorf("pod %s: node %q phase %q", name, p.GetSpec().GetNodeName(), p.GetStatus().GetPhase())
		}
		if image != "" && p.GetSpec().GetContainers()[0].GetImage() != image {
			return fmt.Errorf("pod %s runs %s, want %s", name, p.GetSpec().GetContainers()[0].GetImage(), image)
		}
		ready := false
		for _, c := range p.GetStatus().GetConditions() {
			ready = ready || (c.GetType() == "Ready" && c.GetStatus() == "True")
		}
		if !ready {
			return fmt.Errorf("pod %s not Ready", name)
		}
		ips[p.GetStatus().GetPodIp()] = true
	}
	obj, err := u.client.Get(context.Background(), u.kind("endpoints"), "default", "demo")
	if err != nil {
		return err
	}
	var got []string
	for _, s := range obj.(*corev1.Endpoints).GetSubsets() {
		for _, a := range s.GetAddresses() {
			got = append(got, a.GetIp())
		}
		if len(s.GetNotReadyAddresses()) > 0 {
			return fmt.Errorf("endpoints list not-ready addresses %v", s.GetNotReadyAddresses())
		}
	}
	if len(got) != n {
		return fmt.Errorf("endpoints %v, want the %d pods' IPs", got, n)
	}
	for _, ip := range got {
		if !ips[ip] {
			return fmt.Errorf("endpoints list %s, not a demo pod's IP (%v)", ip, ips)
		}
	}
	return nil
}

// get asks the service once, on a connection of its own (as curl does: the socket load
// balancer picks a backend per connect), and returns what the pod answered (its name).
var getClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(url string) (string, error) {
	resp, err := getClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// prober keeps asking the service until stopped and counts what failed.
type prober struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	answers    map[string]int
}

func (p *prober) run(ctx context.Context, url string) {
	for ctx.Err() == nil {
		name, err := get(url)
		p.mu.Lock()
		if err != nil {
			p.failed.Add(1)
			if len(p.failures) < 20 {
				p.failures = append(p.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
		} else {
			p.ok.Add(1)
			p.answers[name]++
		}
		p.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpDemoWorkflow is the README's quick start, checked against `skiff up` as a process:
// the demo Deployment (3 replicas) and Service applied with the CLI; all pods Running; the
// Service's cluster IP answers round-robin; a pod reaches it by DNS name; scale to 5 and back
// to 2; a rolling image update with no failed request to a client that keeps asking; a
// deleted pod replaced; deleting the Deployment and Service removes pods, replica sets and
// endpoints; and a clean stop detaches the proxy and leaves no container behind.
func TestUpDemoWorkflow(t *testing.T) {
	u := startUp(t)
	ctx := context.Background()
	banner := u.out.String()
	for _, want := range []string{"Images: ", "skiff-demo:v1", "skiff-busybox:v1", "proxy: eBPF", "DNS:   cluster.local at kube-system/kube-dns",
		"Run the demo", "apply -f deploy/examples/demo.yaml", "get pods -o wide", "curl -s $IP"} {
		if !strings.Contains(banner, want) {
			t.Errorf("the banner lacks %q:\n%s", want, banner)
		}
	}

	root, err := nodetest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(root, "deploy", "examples", "demo.yaml")
	if out := u.mustSkiff("apply", "-f", manifest); !strings.Contains(out, "deployment.apps/demo created") || !strings.Contains(out, "service/demo created") {
		t.Fatalf("apply: %s", out)
	}
	u.eventually(90*time.Second, "3 demo pods Running and Ready, in the endpoints", func() error { return u.readyDemo(3, "skiff-demo:v1") })
	wide := u.mustSkiff("get", "pods", "-o", "wide")
	if strings.Count(wide, "Running") != 3 || !strings.Contains(wide, u.node) {
		t.Errorf("get pods -o wide:\n%s", wide)
	}
	svc, err := u.client.Get(ctx, u.kind("services"), "default", "demo")
	if err != nil {
		t.Fatal(err)
	}
	clusterIP := svc.(*corev1.Service).GetSpec().GetClusterIp()
	url := "http://" + clusterIP + "/"

	// Round-robin: 30 connections, each pod answers 10 (the proxy rotates per connect).
	u.eventually(20*time.Second, "the cluster IP answers", func() error { _, err := get(url); return err })
	pods := map[string]bool{}
	for _, p := range u.demoPods() {
		pods[p.GetMetadata().GetName()] = true
	}
	counts := map[string]int{}
	var seq []string
	for range 30 {
		name, err := get(url)
		if err != nil {
			t.Fatalf("curl %s: %v", url, err)
		}
		counts[name]++
		seq = append(seq, name)
	}
	for name := range pods {
		if counts[name] != 10 {
			t.Errorf("round-robin over 30 requests: %v (sequence %v), want each of %v 10 times", counts, seq, pods)
			break
		}
	}

	// A pod reaches the service by its DNS name through the cluster DNS (kube-dns's cluster IP
	// is the pods' default nameserver).
	bb := &corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "dns-client", Namespace: "default"},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "sh", Image: "skiff-busybox:v1", Command: []string{"sleep", "3600"}}},
			TerminationGracePeriodSeconds: proto.Int64(0)}}
	if _, err := u.client.Create(ctx, bb); err != nil {
		t.Fatal(err)
	}
	u.eventually(60*time.Second, "the busybox pod Running", func() error {
		obj, err := u.client.Get(ctx, u.kind("pods"), "default", "dns-client")
		if err != nil {
			return err
		}
		if ph := obj.(*corev1.Pod).GetStatus().GetPhase(); ph != "Running" {
			return fmt.Errorf("phase %q", ph)
		}
		return nil
	})
	u.eventually(20*time.Second, "nslookup demo.default.svc.cluster.local in a pod", func() error {
		out, err := u.skiff("exec", "dns-client", "--", "nslookup", "demo.default.svc.cluster.local")
		if err != nil {
			return err
		}
		if !strings.Contains(out, clusterIP) {
			return fmt.Errorf("nslookup answered %q, want %s", out, clusterIP)
		}
		return nil
	})
	// (Debian's busybox-static wget crashes with -T, hence timeout.)
	for _, name := range []string{"demo.default.svc.cluster.local", "demo"} {
		out, err := u.skiff("exec", "dns-client", "--", "timeout", "10", "wget", "-q", "-O", "-", "http://"+name+"/")
		if err != nil || !pods[strings.TrimSpace(out)] {
			t.Errorf("wget http://%s/ in a pod: %q, %v; want a demo pod's name", name, out, err)
		}
	}
	u.mustSkiff("delete", "pod", "dns-client")

	// Scale to 5 and back to 2.
	u.mustSkiff("scale", "deployment/demo", "--replicas=5")
	u.eventually(90*time.Second, "5 demo pods Running and Ready, in the endpoints", func() error { return u.readyDemo(5, "") })
	u.mustSkiff("scale", "deployment/demo", "--replicas=2")
	u.eventually(90*time.Second, "2 demo pods, the others gone", func() error { return u.readyDemo(2, "") })

	// A rolling update to skiff-demo:v2 while a client keeps asking the service: no request
	// may fail, and at the end the new pods answer.
	pr := &prober{answers: map[string]int{}}
	probeCtx, stopProbe := context.WithCancel(ctx)
	probing := make(chan struct{})
	go func() {
		// Four clients at once, so that a moment in which the service has a backend that no
		// longer serves is not missed.
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() { defer wg.Done(); pr.run(probeCtx, url) }()
		}
		wg.Wait()
		close(probing)
	}()
	time.Sleep(300 * time.Millisecond)
	old := map[string]bool{}
	for _, p := range u.demoPods() {
		old[p.GetMetadata().GetName()] = true
	}
	u.eventually(10*time.Second, "the image updated", func() error {
		obj, err := u.client.Get(ctx, u.kind("deployments"), "default", "demo")
		if err != nil {
			return err
		}
		d := obj.(*appsv1.Deployment)
		d.GetSpec().GetTemplate().GetSpec().GetContainers()[0].Image = "skiff-demo:v2"
		_, err = u.client.Update(ctx, d)
		return err
	})
	u.eventually(120*time.Second, "the rollout complete: 2 v2 pods Ready, the old ones gone", func() error {
		return u.readyDemo(2, "skiff-demo:v2")
	})
	rollout := u.mustSkiff("rollout", "status", "deployment/demo")
	time.Sleep(500 * time.Millisecond)
	stopProbe()
	<-probing
	newAnswers := 0
	for name, n := range pr.answers {
		if !old[name] {
			newAnswers += n
		}
	}
	t.Logf("during the rolling update: %d requests answered, %d failed; answers by pod %v", pr.ok.Load(), pr.failed.Load(), pr.answers)
	if pr.failed.Load() != 0 {
		t.Errorf("%d requests failed during the rolling update (of %d); first: %v", pr.failed.Load(), pr.ok.Load()+pr.failed.Load(), pr.failures)
	}
	if pr.ok.Load() < 50 || newAnswers == 0 {
		t.Errorf("the client got %d answers, %d from new pods: it did not watch the rollout through", pr.ok.Load(), newAnswers)
	}
	if !strings.Contains(rollout, "successfully rolled out") {
		t.Errorf("rollout status: %s", rollout)
	}

	// A deleted pod is replaced.
	victim := u.demoPods()[0].GetMetadata().GetName()
	u.mustSkiff("delete", "pod", victim)
	u.eventually(90*time.Second, "the deleted pod replaced", func() error {
		if err := u.readyDemo(2, "skiff-demo:v2"); err != nil {
			return err
		}
		for _, p := range u.demoPods() {
			if p.GetMetadata().GetName() == victim {
				return fmt.Errorf("%s still there", victim)
			}
		}
		return nil
	})

	// Deleting the Deployment (and the Service) removes everything.
	u.mustSkiff("delete", "-f", manifest)
	u.eventually(90*time.Second, "pods, replica sets, endpoints and the service gone", func() error {
		var left []string
		for _, k := range []string{"pods", "replicasets", "deployments", "services", "endpoints"} {
			l, err := u.client.List(ctx, u.kind(k), "default", client.ListOptions{})
			if err != nil {
				return err
			}
			for _, o := range l.Items {
				if md := o.GetMetadata(); k != "services" && k != "endpoints" || md.GetName() == "demo" {
					left = append(left, k+"/"+md.GetName())
				}
			}
		}
		if len(left) > 0 {
			sort.Strings(left)
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
	if _, err := get(url); err == nil {
		t.Errorf("the deleted service's cluster IP %s still answers", clusterIP)
	}

	// A clean stop: the pods' shims end, the proxy's programs are detached and unpinned.
	if err := u.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(up.ProxyPinDir(u.dataDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the proxy's pin directory %s is still there after a clean stop (%v)", up.ProxyPinDir(u.dataDir), err)
	}
	if left := shimsServing(filepath.Join(u.dataDir, "containerd", "containerd.sock")); len(left) > 0 {
		t.Errorf("container shims still run after skiff up stopped: %v", left)
	}
}

// shimsServing lists the PIDs of containerd shims serving the containerd at socket.
func shimsServing(socket string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if s := string(b); strings.Contains(s, "containerd-shim") && strings.Contains(s, socket) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
