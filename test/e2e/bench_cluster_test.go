package e2e

// The benchmarks' control plane: stock etcd and stock NATS as separate processes (so their CPU
// time can be read from /proc, apart from everything else), and the apiserver inside the test
// process, pointed at them.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/test/e2e/internal/proc"
)

// benchAPIServerProcess says whether the apiserver runs as its own process rather than in
// the test process. In-process (the default) is simpler and its figures include everything
// a caller of the API sees; but then the publisher shares the test process's CPU with every
// subscriber, and at high fan-out it is starved (see "pub lag"). As a process it gets its
// own share of the machine, as in production, and its CPU is reported on its own.
func benchAPIServerProcess() bool { return os.Getenv("SKIFF_BENCH_APISERVER") == "process" }

// benchCluster is etcd and NATS as processes plus the apiserver, in-process or not.
type benchCluster struct {
	etcd, nats *proc.Process
	api        *proc.Process // nil when the apiserver runs in the test process
	stopInProc func()        // stops the in-process apiserver (nil when not running)
	etcdURL    string
	natsURL    string
	grpcAddr   string
	httpAddr   string // REST, health and /metrics
	etcdClient *clientv3.Client
	js         jetstream.JetStream // the test's own view of the stream
}

// benchLogger logs warnings and errors only: the apiserver and the informers log every
// election and resume at Info, which would bury the tables.
func benchLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startBenchCluster(b *testing.B) *benchCluster {
	b.Helper()
	bins := buildBinaries(b)
	dir := b.TempDir()
	ports := freePorts(b, 5)
	c := &benchCluster{
		etcdURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		natsURL: "nats://127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	// Stock settings: etcd fsyncs every commit, as in production.
	c.etcd = etcdProcess(bins.etcd, dir, ports[0], ports[1])
	c.nats = natsProcess(bins.nats, dir, ports[2])
	b.Cleanup(func() {
		c.nats.Stop()
		c.etcd.Stop()
		if b.Failed() {
			for _, p := range []*proc.Process{c.etcd, c.nats} {
				b.Logf("----- last lines of %s (%s) -----\n%s", p.Name, p.LogPath, p.Tail(40))
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.etcd.Start(); err != nil {
		b.Fatal(err)
	}
	ec, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ec.Close() })
	c.etcdClient = ec
	if err := c.etcd.WaitReady(ctx, func(ctx context.Context) error { _, err := ec.Get(ctx, "health"); return err }); err != nil {
		b.Fatal(err)
	}
	if err := c.nats.Start(); err != nil {
		b.Fatal(err)
	}
	if err := c.nats.WaitReady(ctx, func(ctx context.Context) error { return natsReady(ctx, c.natsURL) }); err != nil {
		b.Fatal(err)
	}

	if benchAPIServerProcess() {
		c.startAPIServerProcess(b, dir, ports[3], ports[4])
		c.js = c.newJetStream(b)
		return c
	}
	// The apiserver, in this process (its CPU shows in the test process's time, not etcd's).
	c.grpcAddr, c.httpAddr = "127.0.0.1:"+strconv.Itoa(ports[3]), "127.0.0.1:"+strconv.Itoa(ports[4])
	c.startInProcAPIServer(b)
	b.Cleanup(func() { c.stopInProcAPIServer() }) // runs before the processes stop (LIFO)
	c.js = c.newJetStream(b)
	return c
}

// startInProcAPIServer runs the apiserver in this process on c.grpcAddr and c.httpAddr.
func (c *benchCluster) startInProcAPIServer(b *testing.B) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srvCtx, stopSrv := context.WithCancel(context.Background())
	srv, err := apiserver.New(ctx, apiserver.Config{EtcdEndpoints: []string{c.etcdURL}, NATSURL: c.natsURL,
		GRPCAddr: c.grpcAddr, HTTPAddr: c.httpAddr, Identity: "bench", Logger: benchLogger()})
	if err != nil {
		stopSrv()
		b.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(srvCtx) }()
	c.stopInProc = func() { stopSrv(); <-served }
}

func (c *benchCluster) stopInProcAPIServer() {
	if c.stopInProc != nil {
		c.stopInProc()
		c.stopInProc = nil
	}
}

// stopAPIServer stops the apiserver (and so the publisher), in process or not.
func (c *benchCluster) stopAPIServer() {
	if c.api != nil {
		c.api.Stop()
		return
	}
	c.stopInProcAPIServer()
}

// startAPIServer starts the apiserver stopped by stopAPIServer again, on the same addresses.
func (c *benchCluster) startAPIServer(b *testing.B) {
	b.Helper()
	if c.api == nil {
		c.startInProcAPIServer(b)
		return
	}
	if err := c.api.Start(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.api.WaitReady(ctx, func(ctx context.Context) error { return readyz(ctx, "http://"+c.httpAddr) }); err != nil {
		b.Fatal(err)
	}
}

// startAPIServerProcess runs the apiserver binary and waits for /readyz.
func (c *benchCluster) startAPIServerProcess(b *testing.B, dir string, grpcPort, httpPort int) {
	b.Helper()
	bin := buildBinaries(b).apiserver
	c.grpcAddr = "127.0.0.1:" + strconv.Itoa(grpcPort)
	httpAddr := "127.0.0.1:" + strconv.Itoa(httpPort)
	c.httpAddr = httpAddr
	c.api = proc.New("apiserver", bin, filepath.Join(dir, "apiserver.log"), "--etcd-endpoints", c.etcdURL,
		"--nats-url", c.natsURL, "--grpc-addr", c.grpcAddr, "--http-addr", httpAddr, "--identity", "bench")
	b.Cleanup(func() { // before NATS and etcd stop (LIFO)
		c.api.Stop()
		if b.Failed() {
			b.Logf("----- last lines of apiserver (%s) -----\n%s", c.api.LogPath, c.api.Tail(40))
		}
	})
	if err := c.api.Start(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.api.WaitReady(ctx, func(ctx context.Context) error {
		return readyz(ctx, "http://"+httpAddr)
	}); err != nil {
		b.Fatal(err)
	}
}

// newClients opens n gRPC connections to the apiserver.
func (c *benchCluster) newClients(b *testing.B, n int) []client.Interface {
	b.Helper()
	out := make([]client.Interface, n)
	for i := range out {
		cl, err := client.NewGRPC(c.grpcAddr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cl.Close() })
		out[i] = cl
	}
	return out
}

// newJetStream opens one NATS connection.
func (c *benchCluster) newJetStream(b *testing.B) jetstream.JetStream {
	b.Helper()
	return connectJetStream(b, c.natsURL)
}

// newJetStreams opens n NATS connections.
func (c *benchCluster) newJetStreams(b *testing.B, n int) []jetstream.JetStream {
	out := make([]jetstream.JetStream, n)
	for i := range out {
		out[i] = c.newJetStream(b)
	}
	return out
}

// newEtcdClients opens n etcd client connections (each its own gRPC connection, so its own
// watch stream).
func (c *benchCluster) newEtcdClients(b *testing.B, n int) []*clientv3.Client {
	b.Helper()
	out := make([]*clientv3.Client, n)
	for i := range out {
		ec, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcdURL}, DialTimeout: 5 * time.Second,
			Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ec.Close() })
		out[i] = ec
	}
	return out
}

// streamInfo reads the bus stream's state.
func (c *benchCluster) streamInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	s, err := c.js.Stream(ctx, bus.StreamName)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// streamRevision is the revision of the stream's last message (0 if none).
func (c *benchCluster) streamRevision(ctx context.Context) int64 {
	s, err := c.js.Stream(ctx, bus.StreamName)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return 0
	}
	m, err := s.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return 0
	}
	rev, _ := strconv.ParseInt(m.Header.Get(bus.HeaderRevision), 10, 64)
	return rev
}

// waitPublished waits until the publisher has put revision rev on the stream: the publisher
// is elected and running.
func (c *benchCluster) waitPublished(b *testing.B, rev int64) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.streamRevision(context.Background()) < rev {
		if time.Now().After(deadline) {
			b.Fatalf("the publisher did not publish revision %d within 30s", rev)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStreamCaughtUp waits until the stream holds the newest change under the registry
// prefix, and returns when it did: the moment the publisher had caught up with the writes
// made so far.
func (c *benchCluster) waitStreamCaughtUp(b *testing.B) time.Time {
	b.Helper()
	at, err := c.streamCaughtUp(context.Background(), 2*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	return at
}

// streamCaughtUp is waitStreamCaughtUp for any goroutine: it returns an error instead of
// failing the benchmark.
func (c *benchCluster) streamCaughtUp(ctx context.Context, timeout time.Duration) (time.Time, error) {
	resp, err := c.etcdClient.Get(ctx, registry.DefaultPrefix+"/", append(clientv3.WithLastRev(), clientv3.WithPrefix())...)
	if err != nil || len(resp.Kvs) == 0 {
		return time.Time{}, fmt.Errorf("newest registry change: %v", err)
	}
	newest := resp.Kvs[0].ModRevision
	deadline := time.Now().Add(timeout)
	for c.streamRevision(ctx) < newest {
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("the stream did not reach revision %d within %s", newest, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now(), nil
}

// watermarkPuts counts the publisher's watermark updates so far (at most 10 a second while it
// publishes).
func (c *benchCluster) watermarkPuts(ctx context.Context) uint64 {
	s, err := c.js.Stream(ctx, "KV_SKIFF_BUS")
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

// deleteConsumers removes every consumer of the bus stream and says how many there were.
// Stopped ordered consumers stay on the server until their inactivity threshold (5 minutes in
// nats.go); removing them keeps one run's leftovers from costing the next run anything.
func (c *benchCluster) deleteConsumers(ctx context.Context) (int, error) {
	s, err := c.js.Stream(ctx, bus.StreamName)
	if err != nil {
		return 0, err
	}
	names := s.ConsumerNames(ctx)
	var all []string
	for n := range names.Name() {
		all = append(all, n)
	}
	if err := names.Err(); err != nil {
		return 0, err
	}
	for _, n := range all {
		if err := s.DeleteConsumer(ctx, n); err != nil {
			return len(all), err
		}
	}
	return len(all), nil
}

// metrics reads the apiserver's /metrics: every series without labels, by name.
func (c *benchCluster) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out, nil
}

// benchCPUMeter reads CPU time (user+system) of etcd, NATS, the apiserver process (-1 when
// the apiserver runs in the test process) and this process.
type benchCPUMeter struct{ etcd, nats, api, self time.Duration }

func (c *benchCluster) cpu() benchCPUMeter {
	m := benchCPUMeter{etcd: benchProcCPU(c.etcd.Pid()), nats: benchProcCPU(c.nats.Pid()), api: -1, self: benchSelfCPU()}
	if c.api != nil {
		m.api = benchProcCPU(c.api.Pid())
	}
	return m
}

func (m benchCPUMeter) sub(o benchCPUMeter) benchCPUMeter {
	d := benchCPUMeter{etcd: m.etcd - o.etcd, nats: m.nats - o.nats, api: -1, self: m.self - o.self}
	if m.api >= 0 && o.api >= 0 {
		d.api = m.api - o.api
	}
	return d
}

// benchProcCPU is utime+stime of a process from /proc/PID/stat (fields 14 and 15, in clock ticks
// of 1/100 s on Linux). -1 if it cannot be read.
func benchProcCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) is in parentheses and may hold spaces: count after it.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return -1
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * (time.Second / 100)
}

// benchRSS is a process's resident memory from /proc/PID/status (0 if unknown).
func benchRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// benchMiB prints a size in MiB.
func benchMiB(n int64) string { return fmt.Sprintf("%.0fMiB", float64(n)/(1<<20)) }

// benchSelfCPU is this process's CPU time: the apiserver, writers, informers or watchers.
func benchSelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPercentile is the p-quantile of sorted durations in nanoseconds.
func benchPercentile(sorted []int64, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)) * p)
	return time.Duration(sorted[min(i, len(sorted)-1)])
}

// benchDur prints a latency compactly: µs below 1 ms, ms with one decimal below 10 s.
func benchDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// benchCPU prints CPU seconds.
func benchCPU(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
