// Package cluster is the integration-test harness of the controllers: a real control plane
// (testenv: embedded etcd, NATS and the apiserver), Node objects, the scheduler and a simulated
// kubelet, and a way to run any component as its own "process" (its own informer factory and
// bus connection) that a test can stop and start again.
package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/internal/testenv/kubeletsim"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/scheduler/scheduler"
)

// Options shape a test cluster.
type Options struct {
	// Nodes is the number of Node objects (node-0, node-1, ...); default 3.
	Nodes int
	// Heartbeat is the simulated kubelet's Lease renewal interval (0: none).
	Heartbeat time.Duration
	// NoScheduler leaves pods unbound (and so never Running).
	NoScheduler bool
	// NoKubelet runs no simulated kubelet.
	NoKubelet bool
	// Fsync makes etcd sync every commit (benchmarks).
	Fsync bool
	// Configure may change the apiserver's configuration.
	Configure func(*apiserver.Config)
}

// Cluster is a running test cluster.
type Cluster struct {
	Env     *testenv.Env
	Client  client.Interface
	Nodes   []string
	Kubelet *kubeletsim.Kubelet
	Log     *slog.Logger
	t       testing.TB
}

// Logger is quiet unless SKIFF_TEST_LOG is set (to a level: debug, info, ...).
func Logger() *slog.Logger {
	lvl := os.Getenv("SKIFF_TEST_LOG")
	if lvl == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var l slog.Level
	_ = l.UnmarshalText([]byte(lvl))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// Start runs a cluster for the test; everything stops when the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	env := testenv.Start(t, testenv.Options{Fsync: o.Fsync, Configure: o.Configure})
	c := &Cluster{Env: env, Client: env.Client, Log: Logger(), t: t}
	for i := range o.Nodes {
		c.Nodes = append(c.Nodes, fmt.Sprintf("node-%d", i))
	}
	ctx := context.Background()
	if err := kubeletsim.CreateNodes(ctx, env.Client, c.Nodes, kubeletsim.NodeOptions{}); err != nil {
		t.Fatal(err)
	}
	if !o.NoScheduler {
		c.StartProcess("scheduler", func(f *informer.Factory) (func(context.Context) error, error) {
			s, err := scheduler.New(scheduler.Config{Client: env.Client, Informers: f, Logger: c.Log})
			if err != nil {
				return nil, err
			}
			return s.Run, nil
		})
	}
	if !o.NoKubelet {
		c.Kubelet = kubeletsim.New(kubeletsim.Config{Client: env.Client, JetStream: env.JetStream(t), Nodes: c.Nodes,
			HeartbeatInterval: o.Heartbeat, Logger: c.Log})
		kctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Kubelet.Run(kctx) }()
		t.Cleanup(func() { cancel(); <-done })
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if !c.Kubelet.WaitForSync(wctx) {
			t.Fatal("simulated kubelet did not sync")
		}
	}
	return c
}

// T is the test the cluster belongs to.
func (c *Cluster) T() testing.TB { return c.t }

// Setup builds a component on a fresh informer factory and returns its run function.
type Setup func(f *informer.Factory) (run func(ctx context.Context) error, err error)

// StartProcess runs a component as if in its own process: its own informer factory and bus
// connection, stopped (and its informers shut down) by the returned stop, or when the test
// ends.
func (c *Cluster) StartProcess(name string, setup Setup) (stop func()) {
	c.t.Helper()
	return c.StartProcessOn(name, c.Env.JetStream(c.t), setup)
}

// StartProcessOn is StartProcess reading the bus through js (e.g. LaggingJetStream).
func (c *Cluster) StartProcessOn(name string, js jetstream.JetStream, setup Setup) (stop func()) {
	c.t.Helper()
	f := informer.NewFactory(c.Client, js, c.Log.With("process", name))
	run, err := setup(f)
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx); err != nil && ctx.Err() == nil {
			c.t.Errorf("%s: %v", name, err)
		}
		cancel()
		f.Shutdown()
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	c.t.Cleanup(stop)
	return stop
}

// Kind returns a kind of the default scheme by name.
func Kind(name string) *scheme.Kind {
	k, err := scheme.Default().ForName(name)
	if err != nil {
		panic(err)
	}
	return k
}

// WaitFor polls cond every 20 ms until it holds or timeout passes (then the test fails with
// the last state cond described).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// List lists a kind in namespace ns (all namespaces when "").
func (c *Cluster) List(k *scheme.Kind, ns string) []scheme.Object {
	c.t.Helper()
	l, err := client.ListAll(context.Background(), c.Client, k, ns, client.ListOptions{})
	if err != nil {
		c.t.Fatalf("list %s: %v", k.Resource, err)
	}
	return l.Items
}

// Recorder follows one kind through its own informer and calls onChange after every change it
// applies, in the order of the changes (the bus's revision order), with the cache as it is at
// that revision: how tests check invariants at every moment rather than by sampling.
func (c *Cluster) Recorder(k *scheme.Kind, onChange func(store *informer.Store, typ string, obj scheme.Object)) *informer.Informer {
	c.t.Helper()
	f := informer.NewFactory(c.Client, c.Env.JetStream(c.t), c.Log.With("process", "recorder"))
	inf := f.For(k)
	inf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { onChange(inf.Store(), "ADDED", obj) },
		UpdateFunc: func(_, obj scheme.Object) { onChange(inf.Store(), "MODIFIED", obj) },
		DeleteFunc: func(obj scheme.Object) { onChange(inf.Store(), "DELETED", obj) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx)
	c.t.Cleanup(func() { cancel(); f.Shutdown() })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if !informer.WaitForCacheSync(wctx, inf) {
		c.t.Fatal("recorder did not sync")
	}
	return inf
}

// APIRequests counts the requests the apiserver answered for resource and verb (create,
// update, ...), whatever their outcome: what a component asked, including writes the server
// found to change nothing.
func (c *Cluster) APIRequests(resource, verb string) float64 {
	c.t.Helper()
	resp, err := http.Get(c.Env.HTTPURL + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "skiff_apiserver_requests_total{") ||
			!strings.Contains(line, `resource="`+resource+`"`) || !strings.Contains(line, `verb="`+verb+`"`) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			total += v
		}
	}
	return total
}
