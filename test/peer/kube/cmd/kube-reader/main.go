// Command kube-reader runs N client-go pod informers against a kube-apiserver and measures
// write -> handler latency for the peer benchmark (make bench-peer). It speaks the same line
// protocol as Skiff's reader (test/e2e/cmd/skiff-reader), so both sides have the same shape.
// With -node-agents N it runs N node agents instead, agent i watching only the pods bound to
// node-%04d (a spec.nodeName field selector, as a kubelet does), and measures bind -> handler
// latency: each measured pod must reach its own node's agent once and no other agent.
// -server may list several apiservers (comma-separated): the connections, and so the
// informers, are spread over them round-robin (two apiserver replicas, each with its own
// watch cache).
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
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
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

func (s *sink) observe(obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	a := m.GetAnnotations()
	switch a[annRun] {
	case s.run:
		now := time.Now().UnixNano()
		if s.node != "" {
			if pod, ok := obj.(*corev1.Pod); !ok || pod.Spec.NodeName != s.node {
				s.foreign.Add(1)
			}
			key := m.GetNamespace() + "/" + m.GetName()
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
	server := flag.String("server", "", "kube-apiserver URL (https://127.0.0.1:PORT); several, comma-separated, share the connections round-robin")
	token := flag.String("token", "", "bearer token")
	n := flag.Int("informers", 1, "pod informers, each with its own list and watch")
	conns := flag.Int("conns", 10, "client connections the informers are spread over")
	run := flag.String("run", "run", "the run ID written by the benchmark (annotation bench/run)")
	maxWrites := flag.Int("max-writes", 10000, "latency slots per informer")
	nodeAgents := flag.Int("node-agents", 0, "run this many node agents (agent i watches node-%04d) instead of -informers")
	syncTimeout := flag.Duration("sync-timeout", 3*time.Minute, "how long the informers may take to list")
	flag.Parse()
	if err := serve(*server, *token, *n, *nodeAgents, *conns, *run, *maxWrites, *syncTimeout); err != nil {
		fmt.Fprintln(os.Stderr, "kube-reader:", err)
		os.Exit(1)
	}
}

func serve(server, token string, n, nodeAgents, conns int, run string, maxWrites int, syncTimeout time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	servers := strings.Split(server, ",")
	clients := make([]kubernetes.Interface, conns)
	for i := range clients {
		cfg := &rest.Config{Host: servers[i%len(servers)], BearerToken: token, QPS: -1,
			TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
		// A dial function of its own keeps client-go from sharing one cached transport (one
		// connection) among all clients.
		d := &net.Dialer{Timeout: 5 * time.Second}
		cfg.Dial = d.DialContext
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		clients[i] = c
	}
	perWrite := int64(n) // deliveries per acknowledged write
	if nodeAgents > 0 {
		n, perWrite = nodeAgents, 1 // each bind reaches one agent
	}
	sinks := make([]*sink, n)
	infs := make([]cache.SharedIndexInformer, n)
	for i := range sinks {
		s := &sink{run: run, warm: run + "-warm", lat: make([]int64, maxWrites)}
		sinks[i] = s
		rc := clients[i%conns].CoreV1().RESTClient()
		lw := cache.NewListWatchFromClient(rc, "pods", metav1.NamespaceAll, fields.Everything())
		h := cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) { s.observe(obj) }}
		if nodeAgents > 0 {
			// A kubelet's watch: its node's pods only. A binding makes the pod match the
			// selector, which the watch reports as ADDED.
			s.node, s.seen = fmt.Sprintf("node-%04d", i), map[string]bool{}
			sel := fields.OneTermEqualSelector("spec.nodeName", s.node).String()
			lw = cache.NewFilteredListWatchFromClient(rc, "pods", metav1.NamespaceAll, func(o *metav1.ListOptions) { o.FieldSelector = sel })
			h.AddFunc = s.observe
		}
		inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
		infs[i] = inf
		go inf.Run(ctx.Done())
	}
	syncs := make([]cache.InformerSynced, n)
	for i, inf := range infs {
		syncs[i] = inf.HasSynced
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, syncTimeout)
	defer syncCancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), syncs...) {
		return fmt.Errorf("informers did not sync within %s", syncTimeout)
	}
	fmt.Println("synced")
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
	fmt.Println("live")

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
		out, _ := json.Marshal(collect(sinks, k*perWrite))
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
