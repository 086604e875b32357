package e2e

// The node-scoped fan-out of the peer benchmark (SKIFF_PEER_PARTS=nodefan): N node agents in
// one reader process per side, agent i following only the pods bound to node-%04d (Skiff: the
// node's bus subjects through Factory.ForNode; Kubernetes: a spec.nodeName field-selector
// watch, as a kubelet has), while the benchmark binds unbound pods to the nodes at a paced
// rate through the binding subresource. Each binding carries the run and its send time as
// annotations, which both servers copy onto the pod, so the agent's handler measures
// bind -> agent. Neither server needs Node objects for a binding.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

const peerNodeNS = "peer-nodes"

// peerNodeFanShape is the node-scoped point: agents (nodes), pods bound, binds/s.
type peerNodeFanShape struct{ agents, pods, rate int }

func peerNodeFanSize() peerNodeFanShape {
	if peerQuick() {
		return peerNodeFanShape{agents: 100, pods: 1000, rate: 1000}
	}
	return peerNodeFanShape{agents: 1000, pods: 10000, rate: 1000}
}

func peerNodeName(i int) string { return fmt.Sprintf("node-%04d", i) }

// peerBindingJSON is a Binding of pod name to node, with annotations (copied onto the pod).
func peerBindingJSON(name, node string, ann map[string]string) []byte {
	a := ""
	for k, v := range ann {
		if a != "" {
			a += ","
		}
		a += strconv.Quote(k) + ":" + strconv.Quote(v)
	}
	return []byte(`{"apiVersion":"v1","kind":"Binding","metadata":{"name":"` + name + `","annotations":{` + a +
		`}},"target":{"apiVersion":"v1","kind":"Node","name":"` + node + `"}}`)
}

func (s *peerServer) bind(ctx context.Context, ns, name, node string, ann map[string]string) error {
	_, err := s.do(ctx, http.MethodPost, podsPath(ns, name)+"/binding", peerBindingJSON(name, node, ann), http.StatusCreated)
	return err
}

// createNodeFanPods creates, unbound, the pods n-%05d that the run binds and one warm-up pod
// w-%04d per agent, in ns on s.
func createNodeFanPods(tb testing.TB, s *peerServer, ns string, agents, pods int) {
	tb.Helper()
	ctx := context.Background()
	if err := peerParallel(pods+agents, 16, func(i int) error {
		name := fmt.Sprintf("n-%05d", i)
		if i >= pods {
			name = fmt.Sprintf("w-%04d", i-pods)
		}
		_, err := s.do(ctx, http.MethodPost, podsPath(ns, ""), peerPodJSON(tb, ns, name), http.StatusCreated)
		return err
	}); err != nil {
		tb.Fatalf("creating the node-scoped pods on %s: %v", s.name, err)
	}
}

// nodeFanLoad binds pod n-k to node k%agents, paced at rate, stamped with its run, number
// and send time. The warm-up binds each agent's warm-up pod to it in one burst at the first
// tick: every agent then has seen a binding (is live) before the measured ones, at the cost of
// one extra pod per node rather than a warm-up stream per node.
func nodeFanLoad(s *peerServer, ns, runID string, shape peerNodeFanShape) peerLoad {
	var once sync.Once
	report := func(err error) { once.Do(func() { fmt.Printf("  %s: a binding failed: %v\n", s.name, err) }) }
	return peerLoad{
		writes:   shape.pods,
		perWrite: 1,
		warm: func(ctx context.Context, tick int) {
			if tick != 1 {
				return
			}
			if err := peerParallel(shape.agents, 16, func(i int) error {
				return s.bind(ctx, ns, fmt.Sprintf("w-%04d", i), peerNodeName(i), map[string]string{annRun: runID + "-warm"})
			}); err != nil {
				report(err)
			}
		},
		write: func(ctx context.Context) paced {
			return peerPaced(ctx, shape.rate, shape.pods, func(ctx context.Context, k int) error {
				err := s.bind(ctx, ns, fmt.Sprintf("n-%05d", k), peerNodeName(k%shape.agents), map[string]string{annRun: runID,
					annSeq: strconv.Itoa(k), annSent: strconv.FormatInt(time.Now().UnixNano(), 10)})
				if err != nil {
					report(err)
				}
				return err
			})
		},
	}
}

// nodeFanArgs are a reader's arguments for shape's node agents (latency slots: the agent's
// share of the binds, with room). Each agent lists its node's pods first, and a list with a
// field selector may cost the server a read of every pod: 1,000 agents may take minutes.
func nodeFanArgs(runID string, shape peerNodeFanShape, conns int) []string {
	return []string{"-node-agents", strconv.Itoa(shape.agents), "-conns", strconv.Itoa(conns), "-run", runID,
		"-max-writes", strconv.Itoa(shape.pods/shape.agents + 16), "-sync-timeout", "15m"}
}

// peerNodeFan measures bind -> node agent on both sides.
func peerNodeFan(b *testing.B, c *benchCluster, skiff, kube *peerServer, skiffReader, kubeReader string) []fanoutRun {
	b.Helper()
	shape := peerNodeFanSize()
	for _, s := range []*peerServer{skiff, kube} {
		createNodeFanPods(b, s, peerNodeNS, shape.agents, shape.pods)
	}
	var runs []fanoutRun
	for _, s := range []*peerServer{skiff, kube} {
		runID := fmt.Sprintf("%s-nodes-%d", s.name, shape.agents)
		bin := skiffReader
		args := []string{"-grpc", c.grpcAddr, "-nats", c.natsURL}
		procs := map[string]int{"etcd": c.etcd.Pid(), "nats": c.nats.Pid(), "skiff-apiserver": skiff.pid(), "kube-apiserver": kube.pid()}
		cp := []string{"etcd", "skiff-apiserver", "nats"}
		if s == kube {
			bin, args, cp = kubeReader, []string{"-server", kube.base, "-token", kube.token}, []string{"etcd", "kube-apiserver"}
		}
		args = append(args, nodeFanArgs(runID, shape, peerConns)...)
		r := peerFanoutRun(b, s, nodeFanLoad(s, peerNodeNS, runID, shape), bin, args, runID,
			peerFanoutShape{informers: shape.agents, rate: shape.rate}, procs, cp)
		fmt.Printf("  %-5s %4d node agents, %d binds at %d/s: live in %s; %d bound at %.0f/s; delivered %d/%d, p50 %s p99 %s\n",
			r.side, shape.agents, shape.pods, shape.rate, r.live.Round(time.Millisecond), r.acked, r.writeRate, r.res.Delivered,
			r.acked, benchDur(time.Duration(r.res.P50)), benchDur(time.Duration(r.res.P99)))
		if r.err != nil {
			peerRunFailed(b, r.side, r.side+" node agents", r.err)
		}
		runs = append(runs, r)
	}
	return runs
}

// peerNodeFanReport prints the node-scoped table and its goal.
func peerNodeFanReport(nf []fanoutRun) {
	if len(nf) == 0 {
		return
	}
	fmt.Printf("\nNode-scoped fan-out: one agent per node following only its node's pods, in one reader process per side; paced bindings (REST JSON, %d writers)\n", peerWriters)
	fmt.Printf("%-5s %6s %8s %6s %7s | %8s %8s | %8s %8s %8s %9s | %8s %8s %8s %8s %8s %9s %11s\n", "side", "agents", "live in", "binds", "binds/s",
		"ack p50", "ack p99", "p50", "p99", "max", "delivered", "etcd CPU", "api CPU", "NATS CPU", "rdr CPU", "cp CPU", "total CPU", "cp µs/bind")
	var s, k *fanoutRun
	for i, r := range nf {
		api, nats := "skiff-apiserver", benchCPU(r.cpu["nats"])
		if r.side == "kube" {
			api, nats = "kube-apiserver", "-"
			k = &nf[i]
		} else {
			s = &nf[i]
		}
		fmt.Printf("%-5s %6d %8s %6d %7.0f | %8s %8s | %8s %8s %8s %9d | %8s %8s %8s %8s %8s %9s %11.1f\n", r.side, r.informers,
			benchDur(r.live), r.acked, r.writeRate,
			benchDur(r.ack.pct(.5)), benchDur(r.ack.pct(.99)), benchDur(time.Duration(r.res.P50)), benchDur(time.Duration(r.res.P99)), benchDur(time.Duration(r.res.Max)), r.res.Delivered,
			benchCPU(r.cpu["etcd"]), benchCPU(r.cpu[api]), nats, benchCPU(r.cpu["reader"]), benchCPU(r.controlPlane),
			benchCPU(r.controlPlane+r.cpu["reader"]), r.perEventMicro)
	}
	fmt.Println("  live in = reader start -> every agent listed its node's pods and saw its warm-up binding.")
	fmt.Println("  ack = the binding request's own latency (send -> 201); p50/p99/max = bind sent -> the agent's handler.")
	fmt.Println("  CPU: from the first binding until the agents had every one. cp = control plane (etcd + apiserver,")
	fmt.Println("  + NATS for Skiff); total = cp + the agents' reader process.")
	for _, r := range nf {
		if r.err != nil {
			fmt.Printf("incomplete: %s node agents: %v\n", r.side, r.err)
		}
	}
	fmt.Println()
	if s == nil {
		return
	}
	ok := func(r *fanoutRun) bool { return r != nil && r.err == nil && r.res.P99 > 0 }
	vsKube := "no kube-apiserver run"
	if k != nil {
		vsKube = fmt.Sprintf("%.2fx kube-apiserver's %s; control-plane CPU %s vs %s, %.2fx",
			peerRatio(time.Duration(s.res.P99), time.Duration(k.res.P99)), benchDur(time.Duration(k.res.P99)),
			benchCPU(s.controlPlane), benchCPU(k.controlPlane), peerRatio(s.controlPlane, k.controlPlane))
	}
	fmt.Printf("goal: node-scoped bind -> agent p99 under 50ms (%d agents, %d binds at %d/s): %s (%s) %s\n",
		s.informers, s.writes, s.rate, benchDur(time.Duration(s.res.P99)), vsKube,
		peerVerdict(ok(s) && s.res.P99 < int64(50*time.Millisecond)))
}
