// Command apiserver serves the Skiff API on etcd. Flags only; the server is package apiserver.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/apiserver/ipalloc"
)

func main() {
	etcdEndpoints := flag.String("etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	natsURL := flag.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL (the event bus)")
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:9090", "gRPC listen address")
	httpAddr := flag.String("http-addr", "127.0.0.1:8080", "REST, health and metrics listen address")
	serviceRange := flag.String("service-cluster-ip-range", ipalloc.DefaultRange, "CIDR Services' cluster IPs are allocated from (IPv4; the same on every apiserver)")
	identity := flag.String("identity", "", "this replica's name in the publisher election (default host-pid)")
	stream := bus.DefaultStreamConfig()
	flag.DurationVar(&stream.MaxAge, "stream-max-age", stream.MaxAge, "drop bus events older than this (readers further behind relist)")
	flag.Int64Var(&stream.MaxBytes, "stream-max-bytes", stream.MaxBytes, "bound the bus stream's size; oldest events go first")
	flag.IntVar(&stream.Replicas, "stream-replicas", stream.Replicas, "replicas of the bus stream in a NATS cluster")
	flag.BoolVar(&stream.Memory, "stream-memory", stream.Memory, "keep the bus stream in memory only (a NATS restart makes every reader relist)")
	notReady := flag.Int64("default-not-ready-toleration-seconds", admission.DefaultTolerationSecondsDefault,
		"tolerationSeconds of the node.kubernetes.io/not-ready:NoExecute toleration added to every pod that has none")
	unreachable := flag.Int64("default-unreachable-toleration-seconds", admission.DefaultTolerationSecondsDefault,
		"tolerationSeconds of the node.kubernetes.io/unreachable:NoExecute toleration added to every pod that has none")
	profiling := flag.Bool("profiling", false, "serve Go's profiles under /debug/pprof/ on --http-addr (not behind authorization)")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := apiserver.New(ctx, apiserver.Config{
		EtcdEndpoints: strings.Split(*etcdEndpoints, ","),
		NATSURL:       *natsURL,
		Stream:        &stream,
		Identity:      *identity,

		ServiceClusterIPRange: *serviceRange,
		GRPCAddr:              *grpcAddr,
		HTTPAddr:              *httpAddr,
		Logger:                log,

		DefaultNotReadyTolerationSeconds:    notReady,
		DefaultUnreachableTolerationSeconds: unreachable,
		Profiling:                           *profiling,
	})
	if err != nil {
		log.Error("apiserver failed to start", "error", err)
		os.Exit(1)
	}
	if err := srv.Serve(ctx); err != nil {
		log.Error("apiserver stopped", "error", err)
		os.Exit(1)
	}
}
