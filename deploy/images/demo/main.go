// Command demo is the image skiff-demo:v1: a tiny HTTP server on :8080 that answers GET /
// with its hostname (its pod's name), GET /healthz with 200, and logs every request to
// stdout. Built static (CGO_ENABLED=0) so the image needs no base.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		addr = ":" + p
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
	if err := srv.ListenAndServe(); err != nil {
		logger.Fatal(err)
	}
}
