package up

import (
	"context"

	"github.com/skiff-project/skiff/pkg/bus"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs `skiff up` on dir and returns its REST URL and a stop function that waits for a
// clean exit.
func start(t *testing.T, dir string) (string, func()) {
	t.Helper()
	opts := Options{DataDir: dir, HTTPAddr: freeAddr(t), GRPCAddr: freeAddr(t), EtcdAddr: freeAddr(t),
		NATSAddr: freeAddr(t), Stream: bus.DefaultStreamConfig(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- Run(ctx, opts) }()
	url := "http://" + opts.HTTPAddr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("skiff up exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("skiff up not ready in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ready in %s", time.Since(began))
	return url, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("skiff up stopped with error: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("skiff up did not stop in 20s")
		}
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	url, stop := start(t, dir)
	body := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"keep"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`
	resp, err := http.Post(url+"/api/v1/namespaces/default/pods", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	created, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, created)
	}
	stop()

	url, stop = start(t, dir)
	defer stop()
	resp, err = http.Get(url + "/api/v1/namespaces/default/pods/keep")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"name":"keep"`) {
		t.Fatalf("after restart: %d %s", resp.StatusCode, got)
	}
	uid := func(b []byte) string {
		i := strings.Index(string(b), `"uid":"`)
		if i < 0 {
			return ""
		}
		return string(b[i+7 : i+7+36])
	}
	if uid(got) == "" || uid(got) != uid(created) {
		t.Errorf("uid changed across restart: %q vs %q", uid(got), uid(created))
	}
}
