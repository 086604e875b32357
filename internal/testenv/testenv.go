// Package testenv is the shared test harness: it runs real etcd and NATS (embedded in the test
// process, on free loopback ports, with data in the test's temp dir) and a real apiserver
// serving gRPC and REST on them.
package testenv

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/internal/embedded"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
)

// Etcd starts an embedded etcd for the test and returns a client of it; both stop when the
// test ends.
// Data is not fsynced (it is thrown away); use EtcdFsync to measure real write costs.
func Etcd(t testing.TB) (*embedded.Etcd, *clientv3.Client) {
	t.Helper()
	return startEtcd(t, false)
}

// EtcdFsync is Etcd with fsync on every commit, as in production (for benchmarks).
func EtcdFsync(t testing.TB) (*embedded.Etcd, *clientv3.Client) {
	t.Helper()
	return startEtcd(t, true)
}

func startEtcd(t testing.TB, fsync bool) (*embedded.Etcd, *clientv3.Client) {
	t.Helper()
	e, err := embedded.StartEtcd(context.Background(), embedded.EtcdConfig{
		Dir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", UnsafeNoFsync: !fsync,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	c, err := e.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return e, c
}

// NATS starts an embedded NATS server with JetStream for the test.
func NATS(t testing.TB) *embedded.NATS {
	t.Helper()
	n, err := embedded.StartNATS(embedded.NATSConfig{Dir: t.TempDir(), Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// Env is a running control plane for a test.
type Env struct {
	Etcd      *clientv3.Client
	NATSURL   string
	APIServer *apiserver.Server
	GRPCAddr  string // host:port of the gRPC API
	HTTPURL   string // http://host:port of the REST API
	Client    client.Interface
}

// Options tune Start.
type Options struct {
	// Configure may change the apiserver's configuration (admission plugins, authorizer).
	Configure func(*apiserver.Config)
	// Fsync makes etcd sync every commit to disk, as in production (for benchmarks).
	Fsync bool
	// NoBus runs the apiserver without NATS: no events are published and Watch is off (to
	// measure the request path alone).
	NoBus bool
}

// Start runs etcd and an apiserver for the test; everything stops when the test ends.
func Start(t testing.TB, opts ...Options) *Env {
	t.Helper()
	fsync, bus := false, true
	for _, o := range opts {
		fsync = fsync || o.Fsync
		bus = bus && !o.NoBus
	}
	_, etcd := startEtcd(t, fsync)
	natsURL := ""
	if bus {
		natsURL = NATS(t).URL
	}
	cfg := apiserver.Config{
		Etcd: etcd, NATSURL: natsURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		if o.Configure != nil {
			o.Configure(&cfg)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := apiserver.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start apiserver: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("apiserver: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("apiserver did not stop in 10s")
		}
	})
	c, err := client.NewGRPC(srv.GRPCAddr())
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &Env{Etcd: etcd, NATSURL: natsURL, APIServer: srv, GRPCAddr: srv.GRPCAddr(), HTTPURL: "http://" + srv.HTTPAddr(), Client: c}
}

// JetStream connects to the environment's NATS for the test's own reading of the bus; the
// connection closes when the test ends.
func (e *Env) JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(e.NATSURL)
	if err != nil {
		t.Fatalf("connect to NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}
