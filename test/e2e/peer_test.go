package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPeerFanoutSkiffReader runs the peer benchmark's fan-out path (make bench-peer) small,
// against a real cluster: Skiff's reader process with 3 informers must report each of 200
// paced writes exactly once per informer, with latencies, and the CPU of the servers read.
func TestPeerFanoutSkiffReader(t *testing.T) {
	start := time.Now()
	c := startCluster(t)
	bin := buildSkiffReader(t)
	t.Logf("cluster up and reader built in %s", time.Since(start))
	s := &peerServer{name: "skiff", base: c.httpURL, http: newPeerHTTPClient(), pid: c.apiserver.Pid}
	if err := s.createNamespace(context.Background(), peerFanoutNS); err != nil {
		t.Fatal(err)
	}
	tmpl := createFanoutPods(t, s)
	const informers, writes = 3, 200
	r := peerFanoutRun(t, s, updateLoad(s, tmpl, "test", 200, writes), bin, []string{"-grpc", c.grpcAddr, "-nats", c.natsURL, "-informers", "3",
		"-conns", "2", "-run", "test", "-max-writes", "200"}, "test", peerFanoutShape{informers, 200},
		map[string]int{"etcd": c.etcd.Pid(), "nats": c.nats.Pid(), "skiff-apiserver": c.apiserver.Pid()},
		[]string{"etcd", "skiff-apiserver", "nats"})
	t.Logf("live after %s; %d writes at %.0f/s; delivered %d, p50 %dµs p99 %dµs", r.live, r.acked, r.writeRate,
		r.res.Delivered, r.res.P50/1000, r.res.P99/1000)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.acked != writes || r.res.Delivered != informers*writes {
		t.Fatalf("acked %d writes, delivered %d; want %d and %d", r.acked, r.res.Delivered, writes, informers*writes)
	}
	if r.res.P50 <= 0 || r.res.P99 < r.res.P50 || r.res.Max < r.res.P99 {
		t.Fatalf("latencies p50 %d p99 %d max %d ns: not ordered", r.res.P50, r.res.P99, r.res.Max)
	}
	if r.cpu["skiff-apiserver"] <= 0 || r.controlPlane < r.cpu["skiff-apiserver"] || r.rss["reader"] <= 0 {
		t.Fatalf("CPU %v, control plane %s, RSS %v: not measured", r.cpu, r.controlPlane, r.rss)
	}
	// Every write really changed the pod: the last one's annotations are on the server.
	out, err := s.do(context.Background(), http.MethodGet, podsPath(peerFanoutNS, "f-00"), nil, http.StatusOK)
	if err != nil {
		t.Fatal(err)
	}
	var pod struct {
		Metadata struct{ Annotations map[string]string }
	}
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	if pod.Metadata.Annotations[annRun] != "test" || pod.Metadata.Annotations["example.com/owner"] != "benchmarks" {
		t.Fatalf("annotations after the writes: %v", pod.Metadata.Annotations)
	}
}

// TestPeerUpdateTemplate: a create's answer becomes an unconditional update body that keeps
// the object's own annotations and adds the benchmark's, without changing the template.
func TestPeerUpdateTemplate(t *testing.T) {
	tmpl, err := updateTemplate([]byte(`{"kind":"Pod","metadata":{"name":"a","resourceVersion":"7","managedFields":[{}],"annotations":{"x":"1"}},"spec":{"n":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	body, err := withAnnotations(tmpl, map[string]string{"y": "2"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Kind     string
		Metadata map[string]any
		Spec     map[string]any
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	ann, _ := got.Metadata["annotations"].(map[string]any)
	if got.Kind != "Pod" || got.Metadata["name"] != "a" || got.Spec["n"] != 1.0 || ann["x"] != "1" || ann["y"] != "2" {
		t.Fatalf("update body %s", body)
	}
	if _, ok := got.Metadata["resourceVersion"]; ok {
		t.Fatalf("update body keeps the resourceVersion (a conditional update): %s", body)
	}
	if _, ok := got.Metadata["managedFields"]; ok {
		t.Fatalf("update body keeps managedFields: %s", body)
	}
	if a := tmpl["metadata"].(map[string]any)["annotations"].(map[string]any); len(a) != 1 {
		t.Fatalf("the template changed: %v", a)
	}
}

// TestPeerSchedulerSkiff runs the peer benchmark's scheduler measurements small on Skiff's
// scheduler process: every pending pod gets bound where its constraint allows, and a rate
// comes out.
func TestPeerSchedulerSkiff(t *testing.T) {
	c := startCluster(t)
	s := &peerServer{name: "skiff", base: c.httpURL, http: newPeerHTTPClient(), pid: c.apiserver.Pid}
	sched := skiffSchedulerProcess(t, buildSkiffScheduler(t), c.grpcAddr, c.natsURL)
	have := 0
	for _, sc := range []schedCase{{"anti-affinity", 60, 60}, {"node-affinity", 80, 100}} {
		r := peerSchedule(t, s, c.etcd.Pid(), sched, sc, have)
		have = sc.nodes
		t.Logf("%s: first binding after %s; %d bound at %.0f pods/s", sc.kind, r.firstBind, r.bound, r.podsPerSec)
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.bound != sc.pods || r.podsPerSec <= 0 || r.schedCPU <= 0 {
			t.Fatalf("%s: bound %d, %.1f pods/s, scheduler CPU %s", sc.kind, r.bound, r.podsPerSec, r.schedCPU)
		}
		nodes, err := boundNodes(context.Background(), s, sc.namespace())
		if err != nil || len(nodes) != sc.pods {
			t.Fatalf("%s: the server has %d bound pods (%v), want %d", sc.kind, len(nodes), err, sc.pods)
		}
		perNode := map[string]int{}
		for _, n := range nodes {
			perNode[n]++
			var i int
			if _, err := fmt.Sscanf(n, "node-%05d", &i); err != nil {
				t.Fatalf("pod bound to %q", n)
			}
			if sc.kind == "node-affinity" && i%4 > 1 {
				t.Errorf("node-affinity pod bound to %s in zone-%d; want zone-0 or zone-1", n, i%4)
			}
		}
		if sc.kind == "anti-affinity" && len(perNode) != sc.pods {
			t.Errorf("anti-affinity pods on %d nodes; want %d, one per node", len(perNode), sc.pods)
		}
	}
}

// TestPeerNodeFanSkiffReader runs the peer benchmark's node-scoped fan-out small against a
// real cluster: 20 node agents in Skiff's reader process, 200 pods bound round-robin to their
// nodes; every agent must get exactly its own node's pods, each once, and no other node's.
func TestPeerNodeFanSkiffReader(t *testing.T) {
	c := startCluster(t)
	bin := buildSkiffReader(t)
	s := &peerServer{name: "skiff", base: c.httpURL, http: newPeerHTTPClient(), pid: c.apiserver.Pid}
	if err := s.createNamespace(context.Background(), peerNodeNS); err != nil {
		t.Fatal(err)
	}
	shape := peerNodeFanShape{agents: 20, pods: 200, rate: 200}
	createNodeFanPods(t, s, peerNodeNS, shape.agents, shape.pods)
	args := append([]string{"-grpc", c.grpcAddr, "-nats", c.natsURL}, nodeFanArgs("test", shape, 2)...)
	r := peerFanoutRun(t, s, nodeFanLoad(s, peerNodeNS, "test", shape), bin, args, "test",
		peerFanoutShape{informers: shape.agents, rate: shape.rate},
		map[string]int{"etcd": c.etcd.Pid(), "nats": c.nats.Pid(), "skiff-apiserver": c.apiserver.Pid()},
		[]string{"etcd", "skiff-apiserver", "nats"})
	t.Logf("live after %s; %d binds at %.0f/s; delivered %d (foreign %d, twice %d), p50 %dµs p99 %dµs", r.live, r.acked,
		r.writeRate, r.res.Delivered, r.res.Foreign, r.res.Dups, r.res.P50/1000, r.res.P99/1000)
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Each delivery was of a pod bound to the agent's own node, none twice to an agent, and
	// there were as many as bindings: so every agent got exactly its node's pods.
	if r.acked != shape.pods || r.res.Delivered != int64(shape.pods) || r.res.Foreign != 0 || r.res.Dups != 0 {
		t.Fatalf("acked %d binds; delivered %d, %d to another node's agent, %d twice; want %d, 0, 0",
			r.acked, r.res.Delivered, r.res.Foreign, r.res.Dups, shape.pods)
	}
	if r.res.P50 <= 0 || r.res.P99 < r.res.P50 || r.res.Max < r.res.P99 || r.controlPlane <= 0 {
		t.Fatalf("latencies p50 %d p99 %d max %d ns, control-plane CPU %s: not measured", r.res.P50, r.res.P99, r.res.Max, r.controlPlane)
	}
	// The bindings really bound the pods, with the benchmark's annotations.
	out, err := s.do(context.Background(), http.MethodGet, podsPath(peerNodeNS, "n-00021"), nil, http.StatusOK)
	if err != nil {
		t.Fatal(err)
	}
	var pod struct {
		Metadata struct{ Annotations map[string]string }
		Spec     struct{ NodeName string }
	}
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != "node-0001" || pod.Metadata.Annotations[annRun] != "test" {
		t.Fatalf("n-00021 after the binds: node %q, annotations %v", pod.Spec.NodeName, pod.Metadata.Annotations)
	}
}

// TestPeerTwoAPIServersSkiffReader runs the peer benchmark's two-apiserver fan-out small on
// two Skiff apiservers over one etcd and NATS: the writes are split evenly across them, the
// reader's informers list from both, and every informer still gets every write once.
func TestPeerTwoAPIServersSkiffReader(t *testing.T) {
	c := startCluster(t)
	bin := buildSkiffReader(t)
	url2, grpc2, p2 := startSkiffReplica(t, c.etcdURL, c.natsURL, "test-2")
	s1 := &peerServer{name: "skiff", base: c.httpURL, http: newPeerHTTPClient(), pid: c.apiserver.Pid}
	s2 := &peerServer{name: "skiff-2", base: url2, http: newPeerHTTPClient(), pid: p2.Pid}
	if err := s1.createNamespace(context.Background(), peerFanoutNS); err != nil {
		t.Fatal(err)
	}
	tmpl := createFanoutPods(t, s1)
	count := func(s *peerServer, verb string) int {
		n, err := podRequests(context.Background(), s.base, verb)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	updates1, updates2, lists1, lists2 := count(s1, "update"), count(s2, "update"), count(s1, "list"), count(s2, "list")
	const informers, writes = 4, 200
	r := peerFanoutRun(t, s1, splitUpdateLoad([]*peerServer{s1, s2}, tmpl, "test", 200, writes), bin,
		[]string{"-grpc", c.grpcAddr + "," + grpc2, "-nats", c.natsURL, "-informers", strconv.Itoa(informers),
			"-conns", "2", "-run", "test", "-max-writes", strconv.Itoa(writes)}, "test", peerFanoutShape{informers, 200},
		map[string]int{"etcd": c.etcd.Pid(), "nats": c.nats.Pid(), "skiff-apiserver": c.apiserver.Pid(), "skiff-apiserver-2": p2.Pid()},
		[]string{"etcd", "skiff-apiserver", "skiff-apiserver-2", "nats"})
	t.Logf("live after %s; %d writes at %.0f/s; delivered %d, p50 %dµs p99 %dµs", r.live, r.acked, r.writeRate,
		r.res.Delivered, r.res.P50/1000, r.res.P99/1000)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.acked != writes || r.res.Delivered != informers*writes {
		t.Fatalf("acked %d writes, delivered %d; want %d and %d", r.acked, r.res.Delivered, writes, informers*writes)
	}
	// Half the measured writes went to the second apiserver (the warm-up ones go to the first).
	updates1, updates2 = count(s1, "update")-updates1, count(s2, "update")-updates2
	if updates2 != writes/2 || updates1 < writes/2 {
		t.Errorf("pod updates: %d on the first apiserver, %d on the second; want at least %d and exactly %d", updates1, updates2, writes/2, writes/2)
	}
	// Each of the reader's two connections listed from its own apiserver (two informers each).
	if lists1, lists2 = count(s1, "list")-lists1, count(s2, "list")-lists2; lists1 < 2 || lists2 < 2 {
		t.Errorf("pod lists: %d on the first apiserver, %d on the second; want at least 2 on each", lists1, lists2)
	}
	if r.cpu["skiff-apiserver-2"] <= 0 {
		t.Errorf("CPU %v: the second apiserver's not measured", r.cpu)
	}
}

// podRequests sums the pod requests of one verb (every code) an apiserver at base has served,
// from its /metrics.
func podRequests(ctx context.Context, base, verb string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(body), "\n") {
		series, value, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(series, "skiff_apiserver_requests_total{") ||
			!strings.Contains(series, `resource="pods"`) || !strings.Contains(series, `verb="`+verb+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("metric %q: %w", line, err)
		}
		n += int(v)
	}
	return n, nil
}
