// Command demo is the image skiff-demo:v1: a tiny HTTP server on :8080 that answers GET /
// with its hostname (its pod's name), GET /healthz with 200, and logs every request to
// stdout. Built static (CGO_ENABLED=0) so the image needs no base.
//
// On SIGTERM it goes on serving for DRAIN_SECONDS (default 2) before it stops accepting and
// finishes the requests in flight: the pod's deletion reaches the kubelet (which sends the
// SIGTERM) and the Endpoints, then every node's proxy, at the same time, so for a moment new
// connections may still arrive. Kubernetes users get the same with a preStop sleep.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	addr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
	}
	drain := 2 * time.Second
	if s := os.Getenv("DRAIN_SECONDS"); s != "" {
		n, err := strconv.ParseFloat(s, 64)
		if err != nil || n < 0 {
			log.Fatalf("DRAIN_SECONDS=%q: want a number of seconds >= 0", s)
		}
		drain = time.Duration(n * float64(time.Second))
	}
	host, _ := os.Hostname()
	logger := log.New(os.Stdout, "", 0)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, host) })
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		mux.ServeHTTP(w, r)
		logger.Printf("%s %s %s from %s in %s", time.Now().UTC().Format(time.RFC3339), r.Method, r.URL.Path, r.RemoteAddr, time.Since(start).Round(time.Microsecond))
	})
	logger.Printf("skiff-demo %s listening on %s", host, addr)
	srv := &http.Server{Addr: addr, Handler: logged, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-served:
		logger.Fatal(err)
	case s := <-sig:
		logger.Printf("%s: serving %s more, then stopping", s, drain)
	}
	time.Sleep(drain)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Fatal(err)
	}
	logger.Printf("stopped")
}
