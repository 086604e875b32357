// Package up runs a whole Skiff control plane in one process: embedded etcd, embedded NATS
// with JetStream and the apiserver, with all data under one directory. It is `skiff up`.
package up

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/internal/embedded"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/record"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/endpoints/endpoints"
	"github.com/skiff-project/skiff/services/rs-controller/manager"
	"github.com/skiff-project/skiff/services/scheduler/scheduler"
)

// Options configure Run.
type Options struct {
	DataDir  string // etcd and JetStream data; kept across restarts
	HTTPAddr string // REST, health, metrics
	GRPCAddr string
	EtcdAddr string // embedded etcd's client address
	NATSAddr string // embedded NATS's client address
	Stream   bus.StreamConfig
	// NATSSyncAlways fsyncs every bus message (see embedded.NATSConfig).
	NATSSyncAlways bool
	// ServiceClusterIPRange is where Services' cluster IPs come from ("" is 10.96.0.0/12).
	ServiceClusterIPRange string
	// Proxy runs the service proxy for this machine (when it can: root, cgroup2, BPF).
	Proxy bool
	// DNSAddr is where the cluster DNS listens ("": no DNS); ClusterDomain its domain.
	DNSAddr       string
	ClusterDomain string
	Logger        *slog.Logger
	Out           io.Writer // where the "listening on" banner goes

	// LocalNode runs a node in this process too: a containerd started under DataDir and a
	// kubelet on it (when the host has containerd, runc and the CNI plugins).
	LocalNode bool
	// NodeName (default: the host name), PodCIDR and ClusterDNS (comma-separated) configure it.
	NodeName   string
	PodCIDR    string
	ClusterDNS string
	// Controllers configure the controllers run in process (rs-controller's set, and the
	// endpoints controller).
	Controllers manager.Options
	// DefaultNotReadyTolerationSeconds and DefaultUnreachableTolerationSeconds: see
	// apiserver.Config (nil: 300).
	DefaultNotReadyTolerationSeconds    *int64
	DefaultUnreachableTolerationSeconds *int64
}

// Run starts everything, prints where it listens and serves until ctx is cancelled; then it
// stops the parts in reverse order.
func Run(ctx context.Context, o Options) error {
	start := time.Now()
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	etcd, err := embedded.StartEtcd(ctx, embedded.EtcdConfig{
		Dir: filepath.Join(o.DataDir, "etcd"), ClientAddr: o.EtcdAddr, PeerAddr: "127.0.0.1:0",
	})
	if err != nil {
		return err
	}
	defer etcd.Close()
	etcdClient, err := etcd.Client()
	if err != nil {
		return err
	}
	defer etcdClient.Close()

	nats, err := embedded.StartNATS(embedded.NATSConfig{Dir: filepath.Join(o.DataDir, "nats"), Addr: o.NATSAddr,
		SyncAlways: o.NATSSyncAlways, Logger: log})
	if err != nil {
		return err
	}
	defer nats.Close()

	srv, err := apiserver.New(ctx, apiserver.Config{
		Etcd: etcdClient, NATSURL: nats.URL, Stream: &o.Stream, GRPCAddr: o.GRPCAddr, HTTPAddr: o.HTTPAddr, Logger: log,
		ServiceClusterIPRange:            o.ServiceClusterIPRange,
		DefaultNotReadyTolerationSeconds: o.DefaultNotReadyTolerationSeconds, DefaultUnreachableTolerationSeconds: o.DefaultUnreachableTolerationSeconds,
	})
	if err != nil {
		return err
	}
	var node *localNode
	nodeLine := "  Node:  none (--local-node=false)"
	if o.LocalNode {
		if missing := localNodeMissing(); missing != "" {
			nodeLine = "  Node:  NOT STARTED: this host lacks " + missing + " (nothing was installed; --local-node=false runs the control plane alone)"
			log.Warn("local node not started", "missing", missing)
		} else if node, err = startLocalNode(ctx, o, log); err != nil {
			return fmt.Errorf("local node: %w", err)
		} else {
			defer node.stop()
			nodeLine = fmt.Sprintf("  Node:  %s (containerd %s, pod CIDR %s; load images with: skiff image load bin/images/demo.tar)",
				node.name, node.daemon.Address, node.podCIDR)
		}
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, "Skiff is up in %s (data in %s)\n", time.Since(start).Round(time.Millisecond), o.DataDir)
		fmt.Fprintf(o.Out, "  REST:  http://%s   (health /readyz, metrics /metrics)\n", srv.HTTPAddr())
		fmt.Fprintf(o.Out, "  gRPC:  %s\n", srv.GRPCAddr())
		fmt.Fprintf(o.Out, "  etcd:  %s   NATS: %s\n", etcd.Endpoint, nats.URL)
		fmt.Fprintln(o.Out, nodeLine)
		fmt.Fprintf(o.Out, "Try: skiff apply -f deploy/examples/web.yaml && skiff get deployments,services\n")
	}
	log.Info("skiff up", "startup", time.Since(start), "http", srv.HTTPAddr(), "grpc", srv.GRPCAddr(),
		"etcd", etcd.Endpoint, "nats", nats.URL, "dataDir", o.DataDir)

	serveCtx, stopServing := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx) }()
	// The control plane's components run in this process on one shared Env (one client, one
	// bus connection, one informer per kind), stopping before the apiserver does.
	err = runComponents(ctx, o, node, srv.GRPCAddr(), nats.URL, log)
	log.Info("skiff stopping")
	stopServing()
	if serr := <-served; err == nil {
		err = serr
	}
	return err
}

// runComponents runs the in-process components until ctx ends: the scheduler, the controllers
// of rs-controller, the endpoints controller, the proxy and DNS, and the local node.
func runComponents(ctx context.Context, o Options, node *localNode, server, natsURL string, log *slog.Logger) error {
	env, closeEnv, err := component.Connect("skiff-up", server, natsURL, log)
	if err != nil {
		return err
	}
	defer closeEnv()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	schedEvents := record.New(env.Client, scheduler.DefaultSchedulerName, "", log)
	sched, err := scheduler.New(scheduler.Config{Client: env.Client, Informers: env.Informers,
		Recorder: schedEvents, Logger: log, Metrics: env.Metrics})
	if err != nil {
		return err
	}
	endpointsController, err := endpoints.New(endpoints.Config{Client: env.Client, Informers: env.Informers, Logger: log, Metrics: env.Metrics})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	for name, run := range serviceComponents(o, env, o.Out) {
		start(name, run)
	}
	start("scheduler", sched.Run)
	start("scheduler events", func(ctx context.Context) error { schedEvents.Run(ctx); return nil })
	start("controllers", func(ctx context.Context) error { return manager.Run(ctx, env, o.Controllers) })
	start("endpoints", endpointsController.Run)
	if node != nil {
		k, events, err := node.kubelet(o, env)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		start("kubelet", k.Run)
		start("kubelet events", func(ctx context.Context) error { events.Run(ctx); return nil })
	}
	<-ctx.Done()
	wg.Wait()
	env.Informers.Shutdown()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
