package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/skiff-project/skiff/internal/limits"
)

// NATS is an embedded NATS server with JetStream.
type NATS struct {
	server *server.Server
	// URL is the client URL, e.g. nats://127.0.0.1:4222.
	URL string
}

// NATSConfig configures StartNATS.
type NATSConfig struct {
	Dir  string // JetStream storage directory
	Addr string // host:port; port 0 picks a free one
	// SyncAlways fsyncs every stored message (etcd-like durability at several times the cost);
	// otherwise NATS syncs every two minutes and a machine crash can lose the unsynced tail.
	SyncAlways bool
	// Logger receives the server's warnings and errors (its notices at debug level); nil
	// discards everything. NATS' own log lines are not structured, so they go through it.
	Logger *slog.Logger
	// MaxPayload overrides the largest message the server takes (0: limits.BusMaxPayloadBytes,
	// what the bus needs). Tests set it lower to exercise the publisher's oversize markers.
	MaxPayload int32
}

// StartNATS starts NATS with JetStream and waits until it accepts connections.
func StartNATS(cfg NATSConfig) (*NATS, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:4222"
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	} else if l, err := net.Listen("tcp", addr); err != nil {
		// The server would only log it and never become ready: say so now.
		return nil, fmt.Errorf("nats address %s: %w", addr, err)
	} else {
		_ = l.Close()
	}
	maxPayload := cfg.MaxPayload
	if maxPayload == 0 {
		maxPayload = limits.BusMaxPayloadBytes
	}
	opts := &server.Options{
		ServerName: "skiff",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true,
		NoLog:      true,
		SyncAlways: cfg.SyncAlways,
		MaxPayload: maxPayload,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if cfg.Logger != nil {
		// NoLog keeps the server from installing its own (plain text) logger over this one.
		ns.SetLoggerV2(natsLogger{cfg.Logger.With("component", "nats")}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats did not become ready in 30s")
	}
	return &NATS{server: ns, URL: ns.ClientURL()}, nil
}

// Close stops the server and waits for it.
func (n *NATS) Close() {
	n.server.Shutdown()
	n.server.WaitForShutdown()
}

// natsLogger is the NATS server's logger on slog. Notices (the start-up banner, connections)
// are debug: a Skiff user does not need them.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.logf(slog.LevelDebug, format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.logf(slog.LevelWarn, format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.logf(slog.LevelError, format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.logf(slog.LevelError, format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.logf(slog.LevelDebug, format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.logf(slog.LevelDebug, format, v...) }

func (l natsLogger) logf(level slog.Level, format string, v ...any) {
	ctx := context.Background()
	if l.log.Enabled(ctx, level) {
		l.log.Log(ctx, level, fmt.Sprintf(format, v...))
	}
}
