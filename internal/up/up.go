// Package up runs a whole Skiff control plane in one process: embedded etcd, embedded NATS
// with JetStream and the apiserver, with all data under one directory. It is `skiff up`.
package up

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/skiff-project/skiff/internal/embedded"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
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
	Logger         *slog.Logger
	Out            io.Writer // where the "listening on" banner goes
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
	})
	if err != nil {
		return err
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, "Skiff is up in %s (data in %s)\n", time.Since(start).Round(time.Millisecond), o.DataDir)
		fmt.Fprintf(o.Out, "  REST:  http://%s   (health /readyz, metrics /metrics)\n", srv.HTTPAddr())
		fmt.Fprintf(o.Out, "  gRPC:  %s\n", srv.GRPCAddr())
		fmt.Fprintf(o.Out, "  etcd:  %s   NATS: %s\n", etcd.Endpoint, nats.URL)
		fmt.Fprintf(o.Out, "Try: skiff apply -f deploy/examples/web.yaml && skiff get deployments,services\n")
	}
	log.Info("skiff up", "startup", time.Since(start), "http", srv.HTTPAddr(), "grpc", srv.GRPCAddr(),
		"etcd", etcd.Endpoint, "nats", nats.URL, "dataDir", o.DataDir)
	err = srv.Serve(ctx)
	log.Info("skiff stopping")
	return err
}
