// Package hollow starts many hollow kubelets (kubelets on the hollow runtime) in one process:
// nodes that register, heartbeat, follow their pods over the bus and report them Running
// without running anything. Scale tests and benchmarks use it for hundreds of nodes.
package hollow

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/record"

	"github.com/skiff-project/skiff/node/kubelet/kubelet"
	hollowrt "github.com/skiff-project/skiff/node/kubelet/runtime/hollow"
)

// Config configures a fleet.
type Config struct {
	// Count nodes are started, named Prefix-0 .. Prefix-(Count-1).
	Count  int
	Prefix string
	// Client and Informers are shared by all nodes (one bus subscription per node's pods,
	// one Services informer for all).
	Client    client.Interface
	Informers *informer.Factory
	Logger    *slog.Logger
	// Capacity each node reports (default cpu 4, memory 16Gi, pods 110).
	Capacity map[string]string
	// Labels added to every node (besides skiff.io/hollow=true).
	Labels map[string]string
	// Configure may adjust each node's kubelet configuration.
	Configure func(i int, cfg *kubelet.Config)
}

// Fleet is a running set of hollow nodes.
type Fleet struct {
	Nodes    []*kubelet.Kubelet
	Runtimes []*hollowrt.Runtime
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	dir      string
	errMu    sync.Mutex
	errs     []error
}

// Start starts the fleet; the nodes run until Stop or ctx ends.
func Start(ctx context.Context, cfg Config) (*Fleet, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "hollow"
	}
	if cfg.Capacity == nil {
		cfg.Capacity = map[string]string{"cpu": "4", "memory": "16Gi", "pods": "110"}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	dir, err := os.MkdirTemp("", "skiff-hollow")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Fleet{cancel: cancel, dir: dir}
	rec := record.New(cfg.Client, "kubelet", "", log)
	f.wg.Add(1)
	go func() { defer f.wg.Done(); rec.Run(ctx) }()
	for i := range cfg.Count {
		name := fmt.Sprintf("%s-%d", cfg.Prefix, i)
		labels := map[string]string{"skiff.io/hollow": "true"}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		rt := hollowrt.New()
		kc := kubelet.Config{
			NodeName: name, NodeIP: "127.0.0.1",
			PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256),
			Runtime: rt, RootDir: fmt.Sprintf("%s/%s", dir, name),
			Labels: labels, Capacity: cfg.Capacity,
			Client: cfg.Client, Informers: cfg.Informers, Recorder: rec, Logger: log.With("hollow", name),
			Workers: 2,
		}
		if cfg.Configure != nil {
			cfg.Configure(i, &kc)
		}
		k, err := kubelet.New(kc)
		if err != nil {
			f.Stop()
			return nil, err
		}
		f.Nodes, f.Runtimes = append(f.Nodes, k), append(f.Runtimes, rt)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := k.Run(ctx); err != nil && ctx.Err() == nil {
				f.errMu.Lock()
				f.errs = append(f.errs, fmt.Errorf("%s: %w", name, err))
				f.errMu.Unlock()
			}
		}()
	}
	return f, nil
}

// WaitReady waits until every node has registered.
func (f *Fleet) WaitReady(ctx context.Context) error {
	for _, k := range f.Nodes {
		select {
		case <-k.Ready():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Stop stops every node (their Node objects stay, as when kubelets stop) and returns the
// errors nodes failed with.
func (f *Fleet) Stop() []error {
	f.cancel()
	f.wg.Wait()
	_ = os.RemoveAll(f.dir)
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.errs
}
