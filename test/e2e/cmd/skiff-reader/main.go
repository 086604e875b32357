// Command skiff-reader runs N pod informers (pkg/informer, over the event bus) against a Skiff
// apiserver and measures write -> handler latency for the peer benchmark (make bench-peer).
// With -node-agents N it runs N node agents instead, agent i following only the pods bound to
// node-%04d (Factory.ForNode: the node's bus subjects), and measures bind -> handler latency:
// each measured pod must reach its own node's agent once and no other agent.
// -grpc may list several apiservers (comma-separated): the connections, and so the informers'
// lists, are spread over them round-robin (their events come from the bus whichever apiserver
// they list from).
// It speaks the same line protocol as the peer's reader (test/peer/kube/cmd/kube-reader), so
// both sides have the same shape, one reader process each:
//
//	stdout "synced"            every informer has listed
//	stdout "live"              every informer has seen the warm-up write (annotation bench/run = RUN-warm)
//	stdin  "expect K"          K writes of run RUN were acknowledged
//	stdout "result {json}"     once each informer has K deliveries (node agents: K in all), or deliveries stalled;
//	                           then it waits for stdin to close
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
)

const (
	annSent = "bench/sent"
	annRun  = "bench/run"
)

// sink is one informer's record; only that informer's handler goroutine writes lat and seen.
type sink struct {
	run, warm string
	// node, for a node agent: a pod of the run bound elsewhere is counted foreign, and one
	// seen twice a duplicate (a pod is bound once, so its agent sees the run's annotation once).
	node          string
	seen          map[string]bool
	lat           []int64
	n             atomic.Int64
	last          atomic.Int64
	warmed        atomic.Bool
	foreign, dups atomic.Int64
}

func (s *sink) observe(obj scheme.Object) {
	a := obj.GetMetadata().GetAnnotations()
	switch a[annRun] {
	case s.run:
		now := time.Now().UnixNano()
		if s.node != "" {
			if pod, ok := obj.(*corev1.Pod); !ok || pod.GetSpec().GetNodeName() != s.node {
				s.foreign.Add(1)
			}
			key := obj.GetMetadata().GetNamespace() + "/" + obj.GetMetadata().GetName()
			if s.seen[key] {
				s.dups.Add(1)
			}
			s.seen[key] = true
		}
		sent, _ := strconv.ParseInt(a[annSent], 10, 64)
		i := s.n.Load()
		if i < int64(len(s.lat)) {
			s.lat[i] = now - sent
		}
		s.last.Store(now)
		s.n.Store(i + 1)
	case s.warm:
		s.warmed.Store(true)
	}
}

type result struct {
	Delivered int64  `json:"delivered"`
	P50       int64  `json:"p50_ns"`
	P99       int64  `json:"p99_ns"`
	Max       int64  `json:"max_ns"`
	Last      int64  `json:"last_unix_ns"`
	Foreign   int64  `json:"foreign,omitempty"` // node agents: deliveries of pods bound to another node
	Dups      int64  `json:"dups,omitempty"`    // node agents: a pod delivered twice to its agent
	Error     string `json:"error,omitempty"`
}

func main() {
	grpcAddr := flag.String("grpc", "", "the apiserver's gRPC address (lists); several, comma-separated, share the connections round-robin")
	natsURL := flag.String("nats", "", "the bus's NATS URL")
	n := flag.Int("informers", 1, "pod informers")
	conns := flag.Int("conns", 10, "apiserver and NATS connections the informers are spread over")
	run := flag.String("run", "run", "the run ID written by the benchmark (annotation bench/run)")
	maxWrites := flag.Int("max-writes", 10000, "latency slots per informer")
	nodeAgents := flag.Int("node-agents", 0, "run this many node agents (agent i follows node-%04d) instead of -informers")
	syncTimeout := flag.Duration("sync-timeout", 3*time.Minute, "how long the informers may take to list")
	startProfile := flag.String("startup-cpuprofile", "", "write a CPU profile of the start (until every informer is live) to this file")
	runProfile := flag.String("cpuprofile", "", "write a CPU profile of the measured run (from live until the result) to this file")
	flag.Parse()
	if *startProfile != "" {
		f, err := os.Create(*startProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "skiff-reader:", err)
			os.Exit(1)
		}
	}
	if err := serve(*grpcAddr, *natsURL, *n, *nodeAgents, *conns, *run, *maxWrites, *syncTimeout, *runProfile); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-reader:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func serve(grpcAddr, natsURL string, n, nodeAgents, conns int, run string, maxWrites int, syncTimeout time.Duration, runProfile string) error {
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pods, _ := scheme.Default().ForName("pods")
	clients := make([]client.Interface, conns)
	jss := make([]jetstream.JetStream, conns)
	addrs := strings.Split(grpcAddr, ",")
	for i := range clients {
		c, err := client.NewGRPC(addrs[i%len(addrs)])
		if err != nil {
			return err
		}
		defer c.Close()
		nc, err := nats.Connect(natsURL)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		clients[i], jss[i] = c, js
	}
	perWrite := int64(n) // deliveries per acknowledged write
	var sinks []*sink
	var infs []*informer.Informer
	if nodeAgents > 0 {
		// Node agents as kubelets in one process would have them: informers of one Factory per
		// connection (so the agents share its bus.Live), each following one node's subjects; a
		// pod's binding reaches its node's agent as ADDED. Spread over conns connections like
		// the fan-out informers and kube-reader's agents.
		factories := make([]*informer.Factory, conns)
		for i := range factories {
			factories[i] = informer.NewFactory(clients[i], jss[i], logger)
		}
		for i := range nodeAgents {
			node := fmt.Sprintf("node-%04d", i)
			s := &sink{run: run, warm: run + "-warm", node: node, seen: map[string]bool{}, lat: make([]int64, maxWrites)}
			inf := factories[i%conns].ForNode(pods, node)
			inf.AddEventHandler(informer.HandlerFuncs{
				AddFunc:    s.observe,
				UpdateFunc: func(_, obj scheme.Object) { s.observe(obj) },
			})
			sinks, infs = append(sinks, s), append(infs, inf)
		}
		for _, f := range factories {
			f.Start(ctx)
			wg.Add(1)
			go func() { defer wg.Done(); <-ctx.Done(); f.Shutdown() }()
		}
		n, perWrite = nodeAgents, 1 // each bind reaches one agent
	} else {
		for i := range n {
			s := &sink{run: run, warm: run + "-warm", lat: make([]int64, maxWrites)}
			inf := informer.New(informer.Config{Client: clients[i%conns], JetStream: jss[i%conns], Kind: pods, Logger: logger})
			inf.AddEventHandler(informer.HandlerFuncs{UpdateFunc: func(_, obj scheme.Object) { s.observe(obj) }})
			sinks, infs = append(sinks, s), append(infs, inf)
			wg.Add(1)
			go func() { defer wg.Done(); _ = inf.Run(ctx) }()
		}
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, syncTimeout)
	defer syncCancel()
	if !informer.WaitForCacheSync(syncCtx, infs...) {
		return fmt.Errorf("informers did not sync within %s", syncTimeout)
	}
	fmt.Println("synced")
	logger.Warn("synced", "after", time.Since(began).Round(time.Millisecond).String())
	for {
		live := 0
		for _, s := range sinks {
			if s.warmed.Load() {
				live++
			}
		}
		if live == n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	pprof.StopCPUProfile() // -startup-cpuprofile: the start is over
	if runProfile != "" {
		f, err := os.Create(runProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			return err
		}
	}
	fmt.Println("live")
	logger.Warn("live", "after", time.Since(began).Round(time.Millisecond).String())

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 2 || f[0] != "expect" {
			continue
		}
		k, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("bad command %q", in.Text())
		}
		res := collect(sinks, k*perWrite)
		pprof.StopCPUProfile() // -cpuprofile: the run is over
		out, err := json.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Println("result " + string(out))
		// Stay until stdin closes (or the harness kills us): the harness reads this
		// process's CPU and memory after the result.
		for in.Scan() {
		}
		return nil
	}
	return fmt.Errorf("stdin closed before the expect command")
}

// collect waits until expected deliveries arrived, or none arrived for 30 s, and summarises.
func collect(sinks []*sink, expected int64) result {
	var total, lastTotal int64 = 0, -1
	progressAt := time.Now()
	var r result
	for {
		total = 0
		for _, s := range sinks {
			total += s.n.Load()
		}
		if total >= expected {
			break
		}
		if total != lastTotal {
			progressAt, lastTotal = time.Now(), total
		}
		if time.Since(progressAt) > 30*time.Second {
			r.Error = fmt.Sprintf("delivered %d of %d", total, expected)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	all := make([]int64, 0, total)
	for _, s := range sinks {
		r.Last = max(r.Last, s.last.Load())
		r.Foreign += s.foreign.Load()
		r.Dups += s.dups.Load()
		all = append(all, s.lat[:min(s.n.Load(), int64(len(s.lat)))]...)
	}
	slices.Sort(all)
	r.Delivered = total
	if len(all) > 0 {
		r.P50 = all[int(float64(len(all))*0.50)]
		r.P99 = all[min(int(float64(len(all))*0.99), len(all)-1)]
		r.Max = all[len(all)-1]
	}
	return r
}
