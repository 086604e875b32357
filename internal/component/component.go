// Package component is the shape every Skiff service binary shares (scheduler, controllers,
// kubelet, proxy, DNS): the same flags (--server, --nats-url, --leader-elect, --http-addr,
// --log-level), structured logs, a client of the apiserver, a bus connection and a shared
// informer factory, health, readiness and Prometheus metrics on --http-addr, optional leader
// election on a Lease, and a clean stop on SIGTERM. A service's main.go only wires its own
// flags and hands its Run to Main.
package component

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/leaderelection"
	"github.com/skiff-project/skiff/pkg/record"
)

// Options are the flags every component has.
type Options struct {
	Name        string // the component's name: logs, events, metrics, the leader Lease
	Server      string
	NATSURL     string
	HTTPAddr    string
	LeaderElect bool
	// LeaseNamespace holds the leader election Lease (named after the component).
	LeaseNamespace string
	LogLevel       string
	LogFormat      string
	// Identity names this replica in its leader election Lease and events (default: host name
	// and pid, which differ between replicas on different hosts or in different processes).
	Identity string
}

// RegisterFlags defines the shared flags on fs with defaults for a component called name;
// httpAddr is its default health/metrics address.
func (o *Options) RegisterFlags(fs *flag.FlagSet, name, httpAddr string) {
	o.Name = name
	fs.StringVar(&o.Server, "server", envOr("SKIFF_SERVER", "127.0.0.1:9090"),
		"apiserver gRPC address(es), comma-separated (the client fails over between them), or an http:// URL for REST")
	fs.StringVar(&o.NATSURL, "nats-url", envOr("SKIFF_NATS_URL", "nats://127.0.0.1:4222"), "event bus NATS URL(s), comma-separated")
	fs.StringVar(&o.HTTPAddr, "http-addr", httpAddr, "health (/healthz, /readyz) and metrics (/metrics) listen address")
	fs.BoolVar(&o.LeaderElect, "leader-elect", false, "elect one active replica through a Lease (run several replicas safely)")
	fs.StringVar(&o.LeaseNamespace, "leader-elect-namespace", "kube-system", "namespace of the leader election Lease")
	fs.StringVar(&o.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.LogFormat, "log-format", "json", "log format: json or text")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Env is what a running component gets: connections and shared machinery.
type Env struct {
	Log       *slog.Logger
	Client    client.Interface
	JetStream jetstream.JetStream
	Informers *informer.Factory
	Metrics   *prometheus.Registry
	Recorder  *record.Recorder
	// Identity names this replica (host name and pid): leader election, events.
	Identity string
	ready    atomic.Bool
}

// SetReady makes /readyz answer 200 (after the component's caches have synced).
func (e *Env) SetReady(ok bool) { e.ready.Store(ok) }

// Main runs a component: it parses the command line (shared flags plus those setup adds),
// connects, serves health and metrics, and calls run until SIGTERM or SIGINT, or (with
// --leader-elect) until leadership is lost. It exits the process with a non-zero status on
// failure.
func Main(name, httpAddr string, setup func(fs *flag.FlagSet), run func(ctx context.Context, env *Env) error) {
	var o Options
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	o.RegisterFlags(fs, name, httpAddr)
	if setup != nil {
		setup(fs)
	}
	_ = fs.Parse(os.Args[1:])
	log, err := newLogger(o.LogLevel, o.LogFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, o, log, run); err != nil {
		log.Error(name+" failed", "error", err)
		os.Exit(1)
	}
	log.Info(name + " stopped")
}

func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}

// Connect makes the Env a component named name runs with: a client of the apiserver(s) at
// server, a bus connection to natsURL, a shared informer factory, a metrics registry and an
// event recorder (not yet running: see Run). close releases the connections. Processes that
// host several components (skiff up) share one Env among them.
func Connect(name, server, natsURL string, log *slog.Logger) (env *Env, close func(), err error) {
	host, _ := os.Hostname()
	env = &Env{Log: log, Metrics: prometheus.NewRegistry(), Identity: fmt.Sprintf("%s_%d", host, os.Getpid())}
	env.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := client.New(server)
	if err != nil {
		return nil, nil, fmt.Errorf("apiserver client for %s: %w", server, err)
	}
	nc, err := nats.Connect(natsURL, nats.Name("skiff-"+name), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("connect to NATS %s: %w", natsURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		c.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	env.Client, env.JetStream = c, js
	env.Informers = informer.NewFactory(c, js, log)
	env.Recorder = record.New(c, name, host, log)
	return env, func() { nc.Close(); c.Close() }, nil
}

// Run is Main without the process: it connects per o and runs run until ctx ends.
func Run(ctx context.Context, o Options, log *slog.Logger, run func(ctx context.Context, env *Env) error) error {
	log = log.With("component", o.Name)
	env, closeEnv, err := Connect(o.Name, o.Server, o.NATSURL, log)
	if err != nil {
		return err
	}
	defer closeEnv()
	if o.Identity != "" {
		env.Identity = o.Identity
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv, err := serveHealth(o.HTTPAddr, env)
	if err != nil {
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
	}()
	go env.Recorder.Run(ctx)
	defer env.Informers.Shutdown()
	defer cancel() // informers stop before Shutdown waits for them

	if !o.LeaderElect {
		return run(ctx, env)
	}
	return runElected(ctx, o, env, run)
}

// serveHealth serves /healthz, /readyz and /metrics on addr.
func serveHealth(addr string, env *Env) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !env.ready.Load() {
			http.Error(w, "not ready: caches not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(env.Metrics, promhttp.HandlerOpts{}))
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			env.Log.Error("health server", "error", err)
		}
	}()
	env.Log.Info("serving health and metrics", "addr", lis.Addr().String())
	return srv, nil
}

// runElected campaigns for the component's Lease and runs run while leading. A run that
// fails ends the leadership (releasing the Lease) and is returned; losing the Lease is an
// error too: the process should exit, as Kubernetes' components do, because another replica
// may already be acting.
func runElected(ctx context.Context, o Options, env *Env, run func(ctx context.Context, env *Env) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var runErr error
	el, err := leaderelection.New(leaderelection.Config{
		Client: env.Client, Namespace: o.LeaseNamespace, Name: o.Name, Identity: env.Identity, Logger: env.Log,
		OnStartedLeading: func(lctx context.Context) {
			if err := run(lctx, env); err != nil && lctx.Err() == nil {
				runErr = err
				cancel()
			}
		},
		OnNewLeader: func(id string) { env.Log.Info("leader", "identity", id) },
	})
	if err != nil {
		return err
	}
	err = el.Run(ctx)
	if runErr != nil {
		return runErr
	}
	return err
}
