package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
)

// The compose deployment's fixed addresses (deploy/compose/docker-compose.yml).
const (
	composeServer  = "127.0.0.1:19090,127.0.0.1:19091"
	composeNATS    = "nats://172.28.0.21:4222,nats://172.28.0.22:4222,nats://172.28.0.23:4222"
	composeProject = "skiff"
)

// compose drives the docker-compose deployment of deploy/compose.
type compose struct {
	t    *testing.T
	root string // the module root
	cli  string // the skiff CLI that deploy/compose/up.sh built
}

func (d *compose) run(args ...string) (string, error) {
	cmd := exec.Command("docker-compose", append([]string{"-p", composeProject, "-f",
		filepath.Join(d.root, "deploy/compose/docker-compose.yml")}, args...)...)
	cmd.Dir = d.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *compose) must(args ...string) string {
	d.t.Helper()
	out, err := d.run(args...)
	if err != nil {
		d.t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// skiff runs the CLI against both apiservers (it fails over between them).
func (d *compose) skiff(args ...string) string {
	d.t.Helper()
	cmd := exec.Command(d.cli, append([]string{"--server", composeServer}, args...)...)
	cmd.Dir = d.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("skiff %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// execNode runs a command in a node's container.
func (d *compose) execNode(node string, args ...string) (string, error) {
	id := strings.TrimSpace(d.must("ps", "-q", node))
	out, err := exec.Command("docker", append([]string{"exec", id}, args...)...).CombinedOutput()
	return string(out), err
}

// TestCompose runs the seed workflow on the docker-compose deployment and breaks it: the demo
// Deployment and Service with pods on both nodes, the ClusterIP answering round-robin from a
// node; node2 stopped (its pods come back on node1); apiserver1 killed (the CLI and the
// controllers go on through apiserver2); a NATS member and an etcd member killed (writes go
// on, and informers that ran throughout hold exactly what a fresh list returns).
//
// SKIFF_COMPOSE_TESTS=1 runs it where Docker and docker-compose are installed (skips
// otherwise), =require fails without them (make test-compose). It brings the deployment up
// with deploy/compose/up.sh (reusing a running one) and removes it afterwards with its volumes,
// unless SKIFF_COMPOSE_KEEP=1.
func TestCompose(t *testing.T) {
	mode := os.Getenv("SKIFF_COMPOSE_TESTS")
	if mode == "" {
		t.Skip("set SKIFF_COMPOSE_TESTS=1 (or =require) to run the docker-compose deployment's test")
	}
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			if mode == "require" {
				t.Fatalf("SKIFF_COMPOSE_TESTS=require: %s is not installed: %v", tool, err)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	d := &compose{t: t, root: root, cli: filepath.Join(root, "bin/compose/node/skiff")}

	start := time.Now()
	up := exec.Command(filepath.Join(root, "deploy/compose/up.sh"))
	up.Dir = root
	upOut, err := up.CombinedOutput()
	if err != nil {
		t.Fatalf("deploy/compose/up.sh: %v\n%s", err, upOut)
	}
	t.Logf("compose up (images built, both nodes Ready) in %.1f s", time.Since(start).Seconds())
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := d.run("logs", "--no-color", "--tail", "25")
			t.Logf("----- compose logs -----\n%s", logs)
		}
		if os.Getenv("SKIFF_COMPOSE_KEEP") != "" {
			return
		}
		if out, err := d.run("down", "-v", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl, err := client.New(composeServer)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	kinds := map[string]*scheme.Kind{}
	for _, name := range []string{"pods", "nodes", "services", "endpoints", "deployments", "replicasets"} {
		k, err := cl.Scheme().ForName(name)
		if err != nil {
			t.Fatal(err)
		}
		kinds[name] = k
	}

	// Informers of the test's own, on the bus through every failure below.
	// Connected to nats1 (no randomizing), the member killed below: these readers must
	// carry on through another member.
	nc, err := nats.Connect(composeNATS, nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	factory := informer.NewFactory(cl, js, slog.New(slog.NewTextHandler(io.Discard, nil)))
	informers := map[string]*informer.Informer{}
	for name, k := range kinds {
		informers[name] = factory.For(k)
	}
	infCtx, stopInformers := context.WithCancel(ctx)
	defer func() { stopInformers(); factory.Shutdown() }()
	factory.Start(infCtx)
	if !factory.WaitForCacheSync(ctx) {
		t.Fatal("informers did not sync")
	}

	// The demo: 3 replicas spread over both nodes, behind a Service.
	t.Log(strings.TrimSpace(d.skiff("apply", "-f", "deploy/examples/demo.yaml")))
	pods := waitDemo(ctx, t, cl, kinds["pods"], 3, 3*time.Minute, nil)
	perNode := map[string]int{}
	for _, p := range pods {
		perNode[p.GetSpec().GetNodeName()]++
	}
	t.Logf("demo pods per node: %v", perNode)
	if perNode["node1"] == 0 || perNode["node2"] == 0 {
		t.Fatalf("the demo's pods are not on both nodes: %v", perNode)
	}
	svcObj, err := cl.Get(ctx, kinds["services"], "default", "demo")
	if err != nil {
		t.Fatal(err)
	}
	vip := svcObj.(*corev1.Service).GetSpec().GetClusterIp()
	answers := d.curlVIP(ctx, t, "node1", vip, 12, podNames(pods))
	t.Logf("ClusterIP %s from node1, 12 requests: %v", vip, answers)
	for _, p := range pods {
		if answers[p.GetMetadata().GetName()] == 0 {
			t.Errorf("pod %s (on %s) never answered through %s: %v", p.GetMetadata().GetName(), p.GetSpec().GetNodeName(), vip, answers)
		}
	}

	// A pod (on node2) reaches the Service by its DNS name: the pod's cgroup is under its
	// node's, where the proxy is attached, and the DNS server answers it across containers.
	manifest := filepath.Join(t.TempDir(), "client.yaml")
	if err := os.WriteFile(manifest, []byte(composeClientPod), 0o600); err != nil {
		t.Fatal(err)
	}
	d.skiff("apply", "-f", manifest)
	waitPod(ctx, t, cl, kinds["pods"], "compose-client")
	byName := map[string]int{}
	for range 6 {
		out := strings.TrimSpace(d.skiff("exec", "compose-client", "--", "wget", "-qO-", "http://demo.default.svc.cluster.local/"))
		if !podNames(pods)[out] {
			t.Fatalf("a pod asked demo.default.svc.cluster.local and got %q, want a demo pod's name", out)
		}
		byName[out]++
	}
	t.Logf("from a pod on node2, by DNS name: %v", byName)
	d.skiff("delete", "pod", "compose-client", "--grace-period", "0")

	// node2 is lost: its pods are evicted and replaced on node1. (busybox 1.35's wget -T crashes.)
	lost := time.Now()
	d.must("stop", "node2")
	t.Logf("node2 stopped (%.1f s)", time.Since(lost).Seconds())
	pods = waitDemo(ctx, t, cl, kinds["pods"], 3, 2*time.Minute, func(p *corev1.Pod) bool {
		return p.GetSpec().GetNodeName() == "node1"
	})
	replaced := time.Since(lost)
	t.Logf("node2 lost -> its pods replaced and Ready on node1 in %.1f s (node grace 10 s, eviction toleration 10 s)", replaced.Seconds())
	answers = d.curlVIP(ctx, t, "node1", vip, 6, podNames(pods))
	t.Logf("ClusterIP from node1 after node2's loss: %v", answers)

	// apiserver1 dies: the CLI and the controllers go on through apiserver2.
	d.must("kill", "apiserver1")
	t.Log(strings.TrimSpace(d.skiff("scale", "deployment", "demo", "--replicas", "5")))
	pods = waitDemo(ctx, t, cl, kinds["pods"], 5, 2*time.Minute, nil)
	waitEndpoints(ctx, t, cl, kinds["endpoints"], 5)
	t.Logf("apiserver1 killed: scaled to 5 through apiserver2 (%d pods Ready, Endpoints follow)", len(pods))

	// A NATS member and an etcd member die: writes go on, nothing is lost on the bus.
	d.must("kill", "nats1", "etcd1")
	t.Log(strings.TrimSpace(d.skiff("scale", "deployment", "demo", "--replicas", "2")))
	pods = waitDemo(ctx, t, cl, kinds["pods"], 2, 2*time.Minute, nil)
	waitEndpoints(ctx, t, cl, kinds["endpoints"], 2)
	answers = d.curlVIP(ctx, t, "node1", vip, 4, podNames(pods))
	t.Logf("nats1 and etcd1 killed: scaled to 2, ClusterIP answers %v", answers)

	// Every informer's cache is what a fresh list returns (same objects, same versions).
	for name, inf := range informers {
		want := func() map[string]int64 { return listed(ctx, t, cl, kinds[name]) }
		deadline := time.Now().Add(30 * time.Second)
		for {
			cached := map[string]int64{}
			for _, obj := range inf.Store().List() {
				cached[informer.KeyOf(obj)] = rv(obj)
			}
			diff := diffVersions(want(), cached)
			if diff == "" {
				t.Logf("%s: cache equals a fresh list (%d objects, %d relists)", name, len(cached), inf.Relists())
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s's cache differs from a fresh list (%d relists):\n%s%s", name, inf.Relists(), diff,
					busVerdict(ctx, js, kinds[name], cached, want()))
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func podNames(pods []*corev1.Pod) map[string]bool {
	out := map[string]bool{}
	for _, p := range pods {
		out[p.GetMetadata().GetName()] = true
	}
	return out
}

// waitDemo waits until the demo Deployment has exactly n pods that are not terminating, all
// Running and Ready (and accepted by ok, when given), and returns them.
func waitDemo(ctx context.Context, t *testing.T, cl client.Interface, kind *scheme.Kind, n int, timeout time.Duration, ok func(*corev1.Pod) bool) []*corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		list, err := cl.List(ctx, kind, "default", client.ListOptions{LabelSelector: "app=demo"})
		if err == nil {
			var live []*corev1.Pod
			good := 0
			var states []string
			for _, obj := range list.Items {
				p := obj.(*corev1.Pod)
				if p.GetMetadata().GetDeletionTimestamp() != "" {
					continue
				}
				live = append(live, p)
				if p.GetStatus().GetPhase() == "Running" && controller.IsPodReady(p) && (ok == nil || ok(p)) {
					good++
				}
				states = append(states, fmt.Sprintf("%s@%s:%s", p.GetMetadata().GetName(), p.GetSpec().GetNodeName(), p.GetStatus().GetPhase()))
			}
			if len(live) == n && good == n {
				return live
			}
			sort.Strings(states)
			last = strings.Join(states, " ")
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out after %v waiting for %d demo pods Running and Ready; last: %s", timeout, n, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitEndpoints waits until the demo Service's Endpoints hold n ready addresses.
func waitEndpoints(ctx context.Context, t *testing.T, cl client.Interface, kind *scheme.Kind, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	got := -1
	for {
		if obj, err := cl.Get(ctx, kind, "default", "demo"); err == nil {
			got = 0
			for _, s := range obj.(*corev1.Endpoints).GetSubsets() {
				got += len(s.GetAddresses())
			}
			if got == n {
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("the demo's Endpoints hold %d addresses, want %d", got, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// curlVIP asks the Service's cluster IP n times from inside a node (one connection each)
// and counts the answers by pod name; every answer must come from one of want.
func (d *compose) curlVIP(ctx context.Context, t *testing.T, node, vip string, n int, want map[string]bool) map[string]int {
	t.Helper()
	counts := map[string]int{}
	script := fmt.Sprintf("for i in $(seq %d); do curl -sS -m 3 http://%s/; done", n, vip)
	var out string
	var err error
	// The proxy takes Endpoints changes a moment after the Endpoints object; try again
	// until every answer is from a pod that should answer.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err = d.execNode(node, "sh", "-c", script)
		clear(counts)
		bad := err != nil
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			name := strings.TrimSpace(line)
			if name == "" {
				continue
			}
			counts[name]++
			if !want[name] {
				bad = true
			}
		}
		if !bad {
			return counts
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("curl %s from %s: %v; answers %v, want only %v\n%s", vip, node, err, counts, want, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// busVerdict tells where a change went missing: a new reader of the bus from the cache's
// oldest revision either finds the missing versions (the stream holds them: the long-running
// reader lost its place) or does not (they never reached the stream).
func busVerdict(ctx context.Context, js jetstream.JetStream, k *scheme.Kind, cached, want map[string]int64) string {
	after := int64(-1)
	for key, v := range cached {
		if w, ok := want[key]; ok && w != v && (after < 0 || v < after) {
			after = v
		}
	}
	if after < 0 {
		return ""
	}
	found := map[string]int64{}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	_ = bus.NewSubscription(js, scheme.Default()).Run(rctx, []string{bus.KindFilter(k, "")}, after, func(ev bus.Event) error {
		found[informer.KeyOf(ev.Object)] = ev.Revision
		return nil
	})
	var out string
	for key, v := range want {
		if c, ok := cached[key]; ok && c != v {
			if found[key] >= v {
				out += fmt.Sprintf("\t%s@%d is on the bus: the long-running reader lost its place\n", key, v)
			} else {
				out += fmt.Sprintf("\t%s@%d is not on the bus after %d (newest read: %d)\n", key, v, c, found[key])
			}
		}
	}
	return out
}

// composeClientPod asks the demo Service from node2.
const composeClientPod = `apiVersion: v1
kind: Pod
metadata: {name: compose-client}
spec:
  nodeName: node2
  containers:
    - name: client
      image: skiff-busybox:v1
      command: [sleep, "3600"]
`

// waitPod waits until the pod in default is Running.
func waitPod(ctx context.Context, t *testing.T, cl client.Interface, kind *scheme.Kind, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		obj, err := cl.Get(ctx, kind, "default", name)
		if err == nil && obj.(*corev1.Pod).GetStatus().GetPhase() == "Running" {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("pod %s not Running after a minute (%v)", name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
