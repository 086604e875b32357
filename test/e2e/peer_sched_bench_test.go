package e2e

// The scheduler side of the peer benchmark: Skiff's scheduler (services/scheduler) on Skiff's
// apiserver vs kube-scheduler on kube-apiserver, each given the same Node objects and the same
// pending pods, one after the other on the same machine: basic pods at 1,000 and 5,000 nodes,
// pods with required node affinity and pods with required pod anti-affinity at 5,000.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-project/skiff/test/e2e/internal/proc"
)

const peerSchedNS = "peer-sched"

// schedCase is one measurement: pods of one kind pending on nodes Node objects. Each case has
// its namespace; nodes are added to what earlier cases created.
type schedCase struct {
	kind        string // basic, node-affinity, anti-affinity
	nodes, pods int
}

func (sc schedCase) namespace() string {
	return fmt.Sprintf("%s-%s-%d", peerSchedNS, sc.kind, sc.nodes)
}

// podJSON is the case's pod: 100m CPU and 64Mi, plus its kind's constraint.
func (sc schedCase) podJSON(name string) []byte {
	constraint := ""
	switch sc.kind {
	case "node-affinity": // half the zones
		constraint = `,"affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[` +
			`{"matchExpressions":[{"key":"topology.kubernetes.io/zone","operator":"In","values":["zone-0","zone-1"]}]}]}}}`
	case "anti-affinity": // one per node
		constraint = `,"affinity":{"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[` +
			`{"labelSelector":{"matchLabels":{"app":"spread"}},"topologyKey":"kubernetes.io/hostname"}]}}`
	}
	app := "sched"
	if sc.kind == "anti-affinity" {
		app = "spread"
	}
	return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"` + sc.namespace() +
		`","labels":{"app":"` + app + `"}},"spec":{"containers":[{"name":"c","image":"registry.local/pause:1",` +
		`"resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]` + constraint + `}}`)
}

// peerSchedCases are the scheduler measurements (fewer pods with SKIFF_PEER_QUICK).
func peerSchedCases() []schedCase {
	pods, spread := 3000, 1000
	if peerQuick() {
		pods, spread = 1000, 500
	}
	return []schedCase{{"basic", 1000, pods}, {"basic", 5000, pods}, {"node-affinity", 5000, pods}, {"anti-affinity", 5000, spread}}
}

// schedResult is one scheduler's run.
type schedResult struct {
	side        string
	kind        string
	nodes, pods int
	bound       int
	podsPerSec  float64
	firstBind   time.Duration // scheduler start -> first binding seen
	elapsed     time.Duration // first binding seen -> all bound
	schedCPU    time.Duration
	apiCPU      time.Duration
	etcdCPU     time.Duration
	err         error
}

func peerNodeJSON(name string, i int) []byte {
	alloc := `{"cpu":"32","memory":"128Gi","pods":"110"}`
	return []byte(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"` + name + `","labels":{"kubernetes.io/hostname":"` + name +
		`","topology.kubernetes.io/zone":"zone-` + strconv.Itoa(i%4) + `"}},"status":{"capacity":` + alloc + `,"allocatable":` + alloc +
		`,"conditions":[{"type":"Ready","status":"True"}]}}`)
}

// peerParallel runs do(i) for i in [0,n) on workers goroutines; the first error wins.
func peerParallel(n, workers int, do func(i int) error) error {
	var next atomic.Int64
	var first error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// countBound lists the pods of namespace ns on s and counts those with a node.
func countBound(ctx context.Context, s *peerServer, ns string) (int, error) {
	nodes, err := boundNodes(ctx, s, ns)
	return len(nodes), err
}

// boundNodes lists the pods of namespace ns on s and returns the nodes of those bound.
func boundNodes(ctx context.Context, s *peerServer, ns string) ([]string, error) {
	out, err := s.do(ctx, http.MethodGet, podsPath(ns, ""), nil, http.StatusOK)
	if err != nil {
		return nil, err
	}
	var l struct {
		Items []struct {
			Spec struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return nil, err
	}
	var nodes []string
	for _, it := range l.Items {
		if it.Spec.NodeName != "" {
			nodes = append(nodes, it.Spec.NodeName)
		}
	}
	return nodes, nil
}

// peerSchedule creates the case's nodes (those after the first haveNodes, which exist) and
// pods on s, starts the scheduler process and measures the rate at which it binds them.
func peerSchedule(b testing.TB, s *peerServer, etcdPid int, sched *proc.Process, sc schedCase, haveNodes int) (r schedResult) {
	b.Helper()
	r = schedResult{side: s.name, kind: sc.kind, nodes: sc.nodes, pods: sc.pods}
	nodes, pods, ns := sc.nodes, sc.pods, sc.namespace()
	ctx := context.Background()
	if err := s.createNamespace(ctx, ns); err != nil {
		r.err = err
		return r
	}
	if err := peerParallel(nodes-haveNodes, 16, func(i int) error {
		i += haveNodes
		name := fmt.Sprintf("node-%05d", i)
		_, err := s.do(ctx, http.MethodPost, "/api/v1/nodes", peerNodeJSON(name, i), http.StatusCreated)
		return err
	}); err != nil {
		r.err = err
		return r
	}
	if err := peerParallel(pods, 16, func(i int) error {
		_, err := s.do(ctx, http.MethodPost, podsPath(ns, ""), sc.podJSON(fmt.Sprintf("s-%05d", i)), http.StatusCreated)
		return err
	}); err != nil {
		r.err = err
		return r
	}
	api0, etcd0 := benchProcCPU(s.pid()), benchProcCPU(etcdPid)
	start := time.Now()
	if err := sched.Start(); err != nil {
		r.err = err
		return r
	}
	defer sched.Stop()
	var first time.Time
	firstCount := 0
	deadline := start.Add(10 * time.Minute)
	for {
		n, err := countBound(ctx, s, ns)
		if err != nil {
			r.err = err
			return r
		}
		if n > 0 && first.IsZero() {
			first, firstCount = time.Now(), n
			r.firstBind = first.Sub(start)
		}
		if n >= pods {
			r.bound = n
			break
		}
		if time.Now().After(deadline) || !sched.Running() {
			r.bound = n
			r.err = fmt.Errorf("%d of %d pods bound (scheduler running: %v); log: %s", n, pods, sched.Running(), sched.Tail(20))
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.elapsed = time.Since(first)
	r.schedCPU = benchProcCPU(sched.Pid())
	r.apiCPU, r.etcdCPU = benchProcCPU(s.pid())-api0, benchProcCPU(etcdPid)-etcd0
	switch {
	case pods > firstCount && r.elapsed > 0:
		r.podsPerSec = float64(pods-firstCount) / r.elapsed.Seconds()
	case r.firstBind > 0:
		// Every pod was bound by the first look: a lower bound, counting the scheduler's start.
		r.podsPerSec = float64(pods) / r.firstBind.Seconds()
	}
	return r
}

// buildSkiffScheduler builds services/scheduler into the run's bin directory.
func buildSkiffScheduler(b testing.TB) string {
	b.Helper()
	out := filepath.Join(binDir, "scheduler")
	cmd := exec.Command("go", "build", "-o", out, "../../services/scheduler")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build scheduler: %v\n%s", err, o)
	}
	return out
}

// kubeSchedulerProcess is kube-scheduler against kube: no leader election, and client rate
// limits raised (the stock 50 QPS would measure the limiter, not the scheduler).
func kubeSchedulerProcess(b *testing.B, bin string, kube *peerServer) *proc.Process {
	b.Helper()
	dir := b.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: peer, cluster: {server: "`+kube.base+`", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: "`+kube.token+`"}}]
contexts: [{name: peer, context: {cluster: peer, user: admin}}]
current-context: peer
`), 0o600); err != nil {
		b.Fatal(err)
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: "`+kubeconfig+`", qps: 5000, burst: 5000}
leaderElection: {leaderElect: false}
`), 0o600); err != nil {
		b.Fatal(err)
	}
	port := freePorts(b, 1)[0]
	return proc.New("kube-scheduler", bin, filepath.Join(dir, "kube-scheduler.log"), "--config", config,
		"--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(port), "-v", "0")
}

// skiffSchedulerProcess is services/scheduler against Skiff's apiserver and bus.
func skiffSchedulerProcess(b testing.TB, bin, grpcAddr, natsURL string) *proc.Process {
	b.Helper()
	port := freePorts(b, 1)[0]
	return proc.New("scheduler", bin, filepath.Join(b.TempDir(), "scheduler.log"), "--server", grpcAddr,
		"--nats-url", natsURL, "--http-addr", "127.0.0.1:"+strconv.Itoa(port), "--log-level", "warn")
}

// peerScheduler measures both schedulers on each case, one side after the other.
func peerScheduler(b *testing.B, c *benchCluster, skiff, kube *peerServer, kubeSchedBin string) []schedResult {
	b.Helper()
	skiffSched := skiffSchedulerProcess(b, buildSkiffScheduler(b), c.grpcAddr, c.natsURL)
	kubeSched := kubeSchedulerProcess(b, kubeSchedBin, kube)
	var out []schedResult
	haveNodes := map[string]int{}
	for _, sc := range peerSchedCases() {
		for _, side := range []struct {
			s *peerServer
			p *proc.Process
		}{{skiff, skiffSched}, {kube, kubeSched}} {
			r := peerSchedule(b, side.s, c.etcd.Pid(), side.p, sc, haveNodes[side.s.name])
			haveNodes[side.s.name] = max(haveNodes[side.s.name], sc.nodes)
			fmt.Printf("  %-5s scheduler: %d nodes, %d %s pods: first binding after %s, %d bound at %.0f pods/s\n",
				r.side, sc.nodes, sc.pods, sc.kind, r.firstBind.Round(time.Millisecond), r.bound, r.podsPerSec)
			if r.err != nil {
				peerRunFailed(b, r.side, r.side+" scheduler", r.err)
			}
			out = append(out, r)
		}
	}
	return out
}

// peerSchedReport prints the scheduler table and one goal per case.
func peerSchedReport(rs []schedResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Printf("\nScheduler: pods (100m CPU, 64Mi) pending before the scheduler starts; pods/s from the first binding to the last\n")
	fmt.Printf("%-5s %-13s %6s %6s | %9s %10s | %9s %9s %9s\n", "side", "pods", "nodes", "pods", "pods/s", "1st bind", "sched CPU", "api CPU", "etcd CPU")
	for _, r := range rs {
		fmt.Printf("%-5s %-13s %6d %6d | %9.0f %10s | %9s %9s %9s\n", r.side, r.kind, r.nodes, r.pods, r.podsPerSec,
			benchDur(r.firstBind), benchCPU(r.schedCPU), benchCPU(r.apiCPU), benchCPU(r.etcdCPU))
	}
	fmt.Println("  node-affinity: required, half the zones; anti-affinity: required, one pod per node (hostname).")
	fmt.Println()
	for i := 0; i+1 < len(rs); i += 2 {
		s, k := rs[i], rs[i+1] // peerScheduler's order: skiff then kube, per case
		ratio := 0.0
		if k.podsPerSec > 0 {
			ratio = s.podsPerSec / k.podsPerSec
		}
		fmt.Printf("goal: scheduler pods/s at least 2x kube-scheduler's (%d nodes, %s pods): %.2fx (%.0f vs %.0f pods/s) %s\n",
			s.nodes, s.kind, ratio, s.podsPerSec, k.podsPerSec, peerVerdict(s.err == nil && k.err == nil && ratio >= 2))
	}
}
