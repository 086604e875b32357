// Command skiff-reader runs N pod informers (pkg/informer, over the event bus) against a Skiff
// apiserver and measures write -> handler latency for the peer benchmark (make bench-peer).
// It speaks the same line protocol as the peer's reader (test/peer/kube/cmd/kube-reader), so
// both sides have the same shape, one reader process each:
//
//	stdout "synced"            every informer has listed
//	stdout "live"              every informer has seen the warm-up write (annotation bench/run = RUN-warm)
//	stdin  "expect K"          K writes of run RUN were acknowledged
//	stdout "result {json}"     once each informer has K deliveries, or deliveries stalled;
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
)

const (
	annSent = "bench/sent"
	annRun  = "bench/run"
)

// sink is one informer's record; only that informer's handler goroutine writes lat.
type sink struct {
	run, warm string
	lat       []int64
	n         atomic.Int64
	last      atomic.Int64
	warmed    atomic.Bool
}

func (s *sink) observe(obj scheme.Object) {
	a := obj.GetMetadata().GetAnnotations()
	switch a[annRun] {
	case s.run:
		now := time.Now().UnixNano()
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
	Error     string `json:"error,omitempty"`
}

func main() {
	grpcAddr := flag.String("grpc", "", "the apiserver's gRPC address (lists)")
	natsURL := flag.String("nats", "", "the bus's NATS URL")
	n := flag.Int("informers", 1, "pod informers")
	conns := flag.Int("conns", 10, "apiserver and NATS connections the informers are spread over")
	run := flag.String("run", "run", "the run ID written by the benchmark (annotation bench/run)")
	maxWrites := flag.Int("max-writes", 10000, "latency slots per informer")
	flag.Parse()
	if err := serve(*grpcAddr, *natsURL, *n, *conns, *run, *maxWrites); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-reader:", err)
		os.Exit(1)
	}
}

func serve(grpcAddr, natsURL string, n, conns int, run string, maxWrites int) error {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pods, _ := scheme.Default().ForName("pods")
	clients := make([]client.Interface, conns)
	jss := make([]jetstream.JetStream, conns)
	for i := range clients {
		c, err := client.NewGRPC(grpcAddr)
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
	sinks := make([]*sink, n)
	infs := make([]*informer.Informer, n)
	for i := range sinks {
		s := &sink{run: run, warm: run + "-warm", lat: make([]int64, maxWrites)}
		sinks[i] = s
		inf := informer.New(informer.Config{Client: clients[i%conns], JetStream: jss[i%conns], Kind: pods, Logger: logger})
		inf.AddEventHandler(informer.HandlerFuncs{UpdateFunc: func(_, obj scheme.Object) { s.observe(obj) }})
		infs[i] = inf
		wg.Add(1)
		go func() { defer wg.Done(); _ = inf.Run(ctx) }()
	}
	syncCtx, syncCancel := context.WithTimeout(ctx, 3*time.Minute)
	defer syncCancel()
	if !informer.WaitForCacheSync(syncCtx, infs...) {
		return fmt.Errorf("informers did not sync within 3 minutes")
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
		out, err := json.Marshal(collect(sinks, k*int64(n)))
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
