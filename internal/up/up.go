// Package up runs a whole Skiff control plane in one process: embedded etcd, embedded NATS
// with JetStream and the apiserver, with all data under one directory. It is `skiff up`.
package up

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
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
	// NodeName (default: the host name), PodCIDR and ClusterDNS (comma-separated; default
	// kube-dns's cluster IP when the DNS and the proxy run here) configure it.
	NodeName   string
	PodCIDR    string
	ClusterDNS string
	// ImagesDir holds image tarballs (*.tar, what `make images` writes to bin/images) that
	// the local node imports at start ("": none).
	ImagesDir string
	// CLI is how the banner's next steps call the skiff CLI ("": skiff).
	CLI string
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
			nodeLine = fmt.Sprintf("  Node:  %s (containerd %s, pod CIDR %s)", node.name, node.daemon.Address, node.podCIDR)
			if len(node.images) > 0 {
				nodeLine += fmt.Sprintf("\n  Images: %s preloaded from %s", strings.Join(node.images, ", "), o.ImagesDir)
			} else {
				nodeLine += "\n  Images: " + node.imagesNote
			}
		}
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, "Skiff is up in %s (data in %s)\n", time.Since(start).Round(time.Millisecond), o.DataDir)
		fmt.Fprintf(o.Out, "  REST:  http://%s   (health /readyz, metrics /metrics)\n", srv.HTTPAddr())
		fmt.Fprintf(o.Out, "  gRPC:  %s\n", srv.GRPCAddr())
		fmt.Fprintf(o.Out, "  etcd:  %s   NATS: %s\n", etcd.Endpoint, nats.URL)
		fmt.Fprintln(o.Out, nodeLine)
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
	runs, clusterDNS := serviceComponents(o, env, o.Out)
	for name, run := range runs {
		start(name, run)
	}
	start("scheduler", sched.Run)
	start("scheduler events", func(ctx context.Context) error { schedEvents.Run(ctx); return nil })
	start("controllers", func(ctx context.Context) error { return manager.Run(ctx, env, o.Controllers) })
	start("endpoints", endpointsController.Run)
	if node != nil {
		k, events, err := node.kubelet(o, env, clusterDNS)
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		start("kubelet", k.Run)
		start("kubelet events", func(ctx context.Context) error { events.Run(ctx); return nil })
	}
	if o.Out != nil {
		printNextSteps(o.Out, o, node, runs["proxy"] != nil)
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

// printNextSteps ends the banner with the exact commands to run next: the demo where pods can
// run and be reached through their Service, the control plane's own examples otherwise.
func printNextSteps(out io.Writer, o Options, node *localNode, proxy bool) {
	cli := o.CLI
	if cli == "" {
		cli = "skiff"
	}
	server := ""
	if o.GRPCAddr != "127.0.0.1:9090" {
		server = " --server " + o.GRPCAddr
	}
	demoImage := node != nil && slices.Contains(node.images, "skiff-demo:v1")
	switch {
	case node != nil && proxy && demoImage:
		fmt.Fprintf(out, "Run the demo in another terminal (its image is already on the node: no image load needed):\n")
		fmt.Fprintf(out, "  %s%s apply -f deploy/examples/demo.yaml\n", cli, server)
		fmt.Fprintf(out, "  %s%s get pods -o wide\n", cli, server)
		fmt.Fprintf(out, "  IP=$(%s%s get service demo | awk 'NR==2{print $3}')   # the Service's CLUSTER-IP\n", cli, server)
		fmt.Fprintf(out, "  for i in 1 2 3 4 5 6; do curl -s $IP; done             # each pod in turn\n")
	case node != nil:
		why := "the demo image is not loaded (make images, then restart)"
		if !proxy {
			why = "no service proxy (see the proxy line above): curl a pod's IP instead of the Service's"
		}
		fmt.Fprintf(out, "Run the demo in another terminal (%s):\n", why)
		fmt.Fprintf(out, "  %s%s apply -f deploy/examples/demo.yaml\n", cli, server)
		fmt.Fprintf(out, "  %s%s get pods -o wide\n", cli, server)
	default:
		fmt.Fprintf(out, "No node runs pods here; the control plane alone takes objects, e.g.:\n")
		fmt.Fprintf(out, "  %s%s apply -f deploy/examples/web.yaml && %s%s get deployments,services\n", cli, server, cli, server)
	}
	fmt.Fprintf(out, "Stop with Ctrl-C: the pods stop and the proxy detaches; the data stays in %s.\n", o.DataDir)
}
