package e2e

// The scheduler side of the peer benchmark: Skiff's scheduler (services/scheduler) on Skiff's
// apiserver vs kube-scheduler on kube-apiserver, each given the same Node objects and the same
// pending basic pods, one after the other on the same machine.

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

// schedResult is one scheduler's run.
type schedResult struct {
	side        string
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

func peerBasicPodJSON(name string) []byte {
	return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","namespace":"` + peerSchedNS +
		`","labels":{"app":"sched"}},"spec":{"containers":[{"name":"c","image":"registry.local/pause:1",` +
		`"resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]}}`)
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

// countBound lists the pods of peerSchedNS on s and counts those with a node.
func countBound(ctx context.Context, s *peerServer) (int, error) {
	out, err := s.do(ctx, http.MethodGet, podsPath(peerSchedNS, ""), nil, http.StatusOK)
	if err != nil {
		return 0, err
	}
	var l struct {
		Items []struct {
			Spec struct {
				NodeName string `json:"nodeName"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return 0, err
	}
	n := 0
	for _, it := range l.Items {
		if it.Spec.NodeName != "" {
			n++
		}
	}
	return n, nil
}

// peerSchedule creates nodes and pods on s, starts the scheduler process and measures the
// rate at which it binds them.
func peerSchedule(b testing.TB, s *peerServer, etcdPid int, sched *proc.Process, nodes, pods int) (r schedResult) {
	b.Helper()
	r = schedResult{side: s.name, nodes: nodes, pods: pods}
	ctx := context.Background()
	if err := s.createNamespace(ctx, peerSchedNS); err != nil {
		r.err = err
		return r
	}
	if err := peerParallel(nodes, 16, func(i int) error {
		name := fmt.Sprintf("node-%05d", i)
		_, err := s.do(ctx, http.MethodPost, "/api/v1/nodes", peerNodeJSON(name, i), http.StatusCreated)
		return err
	}); err != nil {
		r.err = err
		return r
	}
	if err := peerParallel(pods, 16, func(i int) error {
		_, err := s.do(ctx, http.MethodPost, podsPath(peerSchedNS, ""), peerBasicPodJSON(fmt.Sprintf("s-%05d", i)), http.StatusCreated)
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
		n, err := countBound(ctx, s)
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

// peerScheduler measures both schedulers with basic pods on nodes Node objects.
func peerScheduler(b *testing.B, c *benchCluster, skiff, kube *peerServer, kubeSchedBin string, nodes, pods int) []schedResult {
	b.Helper()
	skiffSched := skiffSchedulerProcess(b, buildSkiffScheduler(b), c.grpcAddr, c.natsURL)
	kubeSched := kubeSchedulerProcess(b, kubeSchedBin, kube)
	var out []schedResult
	for _, side := range []struct {
		s *peerServer
		p *proc.Process
	}{{skiff, skiffSched}, {kube, kubeSched}} {
		r := peerSchedule(b, side.s, c.etcd.Pid(), side.p, nodes, pods)
		fmt.Printf("  %-5s scheduler: %d nodes, %d basic pods: first binding after %s, %d bound at %.0f pods/s\n",
			r.side, nodes, pods, r.firstBind.Round(time.Millisecond), r.bound, r.podsPerSec)
		if r.err != nil {
			b.Errorf("%s scheduler: %v", r.side, r.err)
		}
		out = append(out, r)
	}
	return out
}

// peerSchedReport prints the scheduler table and goal.
func peerSchedReport(rs []schedResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Printf("\nScheduler: basic pods (100m CPU, 64Mi) pending before the scheduler starts; pods/s from the first binding to the last\n")
	fmt.Printf("%-5s %6s %6s | %9s %10s | %9s %9s %9s\n", "side", "nodes", "pods", "pods/s", "1st bind", "sched CPU", "api CPU", "etcd CPU")
	for _, r := range rs {
		fmt.Printf("%-5s %6d %6d | %9.0f %10s | %9s %9s %9s\n", r.side, r.nodes, r.pods, r.podsPerSec,
			benchDur(r.firstBind), benchCPU(r.schedCPU), benchCPU(r.apiCPU), benchCPU(r.etcdCPU))
	}
	var s, k *schedResult
	for i := range rs {
		if rs[i].side == "skiff" {
			s = &rs[i]
		} else {
			k = &rs[i]
		}
	}
	if s != nil && k != nil {
		ratio := 0.0
		if k.podsPerSec > 0 {
			ratio = s.podsPerSec / k.podsPerSec
		}
		ok := s.err == nil && k.err == nil && ratio >= 2
		v := "NOT met"
		if ok {
			v = "met"
		}
		fmt.Printf("goal: scheduler pods/s at least 2x kube-scheduler's (%d nodes, basic pods): %.2fx (%.0f vs %.0f pods/s) %s\n",
			s.nodes, ratio, s.podsPerSec, k.podsPerSec, v)
	}
}
