// Package embedded runs etcd and NATS JetStream inside the current process: the single-binary
// `skiff up` and the test harness both use it, so tests exercise the same servers users run.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/skiff-project/skiff/internal/limits"
)

// Etcd is an embedded single-member etcd.
type Etcd struct {
	server *embed.Etcd
	// Endpoint is the client URL, e.g. http://127.0.0.1:2379.
	Endpoint string
}

// EtcdConfig configures StartEtcd.
type EtcdConfig struct {
	Dir        string // data directory; created if missing
	ClientAddr string // host:port for clients; port 0 picks a free one
	PeerAddr   string // host:port for the (unused) peer listener; port 0 picks a free one
	// UnsafeNoFsync skips fsync: for throwaway test data only.
	UnsafeNoFsync bool
}

// StartEtcd starts etcd and waits until it serves.
func StartEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data dir: %w", err)
	}
	// A port picked free (port 0) may be taken before etcd binds it: pick again.
	var (
		e  *embed.Etcd
		cu url.URL
	)
	for attempt := 1; ; attempt++ {
		var err error
		e, cu, err = startEmbedded(cfg)
		if err == nil {
			break
		}
		picked := portZero(cfg.ClientAddr, "127.0.0.1:2379") || portZero(cfg.PeerAddr, "127.0.0.1:0")
		// embed does not always wrap the listener's error: match its text too.
		inUse := errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
		if !picked || !inUse || attempt == 5 {
			return nil, fmt.Errorf("start etcd: %w", err)
		}
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd failed: %w", err)
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd did not become ready in 30s")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	return &Etcd{server: e, Endpoint: cu.String()}, nil
}

// startEmbedded resolves cfg's ports and starts etcd on them.
func startEmbedded(cfg EtcdConfig) (*embed.Etcd, url.URL, error) {
	clientAddr, err := resolvePort(cfg.ClientAddr, "127.0.0.1:2379")
	if err != nil {
		return nil, url.URL{}, err
	}
	peerAddr, err := resolvePort(cfg.PeerAddr, "127.0.0.1:0")
	if err != nil {
		return nil, url.URL{}, err
	}
	ec := embed.NewConfig()
	ec.Name = "skiff"
	ec.Dir = filepath.Clean(cfg.Dir)
	cu := url.URL{Scheme: "http", Host: clientAddr}
	pu := url.URL{Scheme: "http", Host: peerAddr}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	ec.InitialCluster = ec.Name + "=" + pu.String()
	ec.LogLevel = "error"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.MaxRequestBytes = limits.EtcdMaxRequestBytes
	// Keep history for watches and paginated lists, but not forever.
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	e, err := embed.StartEtcd(ec)
	return e, cu, err
}

// portZero reports whether addr (def when empty) asks for any free port.
func portZero(addr, def string) bool {
	if addr == "" {
		addr = def
	}
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// Client returns a new client of this etcd; the caller closes it.
func (e *Etcd) Client() (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return c, nil
}

// Close stops etcd.
func (e *Etcd) Close() { e.server.Close() }

// resolvePort turns "host:0" into "host:N" with a free port N, since etcd's URLs must name
// the port they advertise.
func resolvePort(addr, def string) (string, error) {
	if addr == "" {
		addr = def
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("pick a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
