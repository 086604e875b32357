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

	"github.com/skiff-project/skiff/services/apiserver/apiserver"
)

func main() {
	etcdEndpoints := flag.String("etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	natsURL := flag.String("nats-url", "nats://127.0.0.1:4222", "NATS server URL (the event bus)")
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:9090", "gRPC listen address")
	httpAddr := flag.String("http-addr", "127.0.0.1:8080", "REST, health and metrics listen address")
	flag.Parse()

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	srv, err := apiserver.New(ctx, apiserver.Config{
		EtcdEndpoints: strings.Split(*etcdEndpoints, ","),
		NATSURL:       *natsURL,
		GRPCAddr:      *grpcAddr,
		HTTPAddr:      *httpAddr,
		Logger:        log,
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
