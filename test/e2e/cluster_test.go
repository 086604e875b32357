package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/test/e2e/internal/proc"
)

// binDir holds the binaries built for this `go test` run (shared by -count=N repetitions).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// binaries are the real servers, built from this module so their versions are the ones in
// go.mod: the apiserver, stock NATS (nats-server's own main) and stock etcd (etcdmain, see
// cmd/etcd).
type binaries struct {
	etcd, nats, apiserver string
}

var (
	buildOnce sync.Once
	built     binaries
	buildErr  error
)

func buildBinaries(t testing.TB) binaries {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs real etcd, NATS and apiserver processes (skipped by -short)")
	}
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("the go command is needed to build the servers: %w", err)
			return
		}
		out, err := exec.Command(goBin, "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
			buildErr = fmt.Errorf("cannot find the module root (go env GOMOD: %q, %v)", out, err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		b := binaries{
			etcd:      filepath.Join(binDir, "etcd"),
			nats:      filepath.Join(binDir, "nats-server"),
			apiserver: filepath.Join(binDir, "apiserver"),
		}
		for _, target := range []struct{ out, pkg string }{
			{b.etcd, "./test/e2e/cmd/etcd"},
			{b.nats, "github.com/nats-io/nats-server/v2"},
			{b.apiserver, "./services/apiserver"},
		} {
			cmd := exec.Command(goBin, "build", "-o", target.out, target.pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", target.pkg, err, out)
				return
			}
		}
		built = b
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

// cluster is etcd, NATS and one apiserver, each a separate process on loopback ports.
type cluster struct {
	t   *testing.T
	dir string

	etcd, nats, apiserver *proc.Process

	etcdURL  string // http://127.0.0.1:port
	natsURL  string // nats://127.0.0.1:port
	grpcAddr string // 127.0.0.1:port
	httpURL  string // http://127.0.0.1:port

	// Etcd is the test's own client of etcd: the truth the apiserver's output is checked against.
	Etcd *clientv3.Client

	// electedMark is how many times the apiserver log said "publisher elected" before the
	// current run started.
	electedMark int
}

// etcdProcess is a stock single-member etcd on loopback ports (fsync on every commit, as in
// production), with its data and log under dir.
func etcdProcess(bin, dir string, clientPort, peerPort int) *proc.Process {
	clientURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	return proc.New("etcd", bin, filepath.Join(dir, "etcd.log"),
		"--name", "default", "--data-dir", filepath.Join(dir, "etcd-data"),
		"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "default="+peerURL, "--log-level", "error")
}

// natsProcess is a stock nats-server with JetStream on a loopback port, storing under dir.
func natsProcess(bin, dir string, port int) *proc.Process {
	return proc.New("nats", bin, filepath.Join(dir, "nats.log"),
		"-js", "-sd", filepath.Join(dir, "nats-data"), "-n", "skiff-e2e",
		"-a", "127.0.0.1", "-p", strconv.Itoa(port))
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	seen := map[int]bool{}
	var ports []int
	for len(ports) < n {
		p, err := proc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// startCluster builds the binaries, starts etcd, NATS and the apiserver and waits until each
// answers. Everything is killed when the test ends; on failure the logs' tails are printed.
func startCluster(t *testing.T, apiserverArgs ...string) *cluster {
	t.Helper()
	bins := buildBinaries(t)
	dir := t.TempDir()
	ports := freePorts(t, 5)
	c := &cluster{t: t, dir: dir,
		etcdURL:  "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		natsURL:  "nats://127.0.0.1:" + strconv.Itoa(ports[2]),
		grpcAddr: "127.0.0.1:" + strconv.Itoa(ports[3]),
		httpURL:  "http://127.0.0.1:" + strconv.Itoa(ports[4]),
	}
	c.etcd = etcdProcess(bins.etcd, dir, ports[0], ports[1])
	c.nats = natsProcess(bins.nats, dir, ports[2])
	args := append([]string{"--etcd-endpoints", c.etcdURL, "--nats-url", c.natsURL,
		"--grpc-addr", c.grpcAddr, "--http-addr", strings.TrimPrefix(c.httpURL, "http://")}, apiserverArgs...)
	c.apiserver = proc.New("apiserver", bins.apiserver, filepath.Join(dir, "apiserver.log"), args...)

	t.Cleanup(func() {
		// The apiserver first, so it does not log the others' deaths as its own failure.
		for _, p := range []*proc.Process{c.apiserver, c.nats, c.etcd} {
			p.Stop()
		}
		if t.Failed() {
			for _, p := range []*proc.Process{c.etcd, c.nats, c.apiserver} {
				t.Logf("----- last lines of %s (%s) -----\n%s", p.Name, p.LogPath, p.Tail(40))
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.etcd.Start(); err != nil {
		t.Fatal(err)
	}
	etcdClient, err := clientv3.New(clientv3.Config{Endpoints: []string{c.etcdURL}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcdClient.Close() })
	c.Etcd = etcdClient
	if err := c.etcd.WaitReady(ctx, func(ctx context.Context) error {
		_, err := etcdClient.Get(ctx, "health")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.startNATS(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.startAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// natsReady: the port accepts, and JetStream answers (after a restart it first recovers the
// stream from disk).
func (c *cluster) natsReady(ctx context.Context) error { return natsReady(ctx, c.natsURL) }

// natsReady succeeds when NATS at url accepts connections and JetStream answers.
func natsReady(ctx context.Context, url string) error {
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		return err
	}
	conn.Close()
	nc, err := nats.Connect(url, nats.Timeout(time.Second), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.AccountInfo(ctx)
	return err
}

func (c *cluster) startNATS(ctx context.Context) error {
	if err := c.nats.Start(); err != nil {
		return err
	}
	return c.nats.WaitReady(ctx, c.natsReady)
}

func (c *cluster) apiserverReady(ctx context.Context) error { return readyz(ctx, c.httpURL) }

// readyz succeeds when the apiserver at httpURL answers /readyz with 200.
func readyz(ctx context.Context, httpURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpURL+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}

// startAPIServer starts the apiserver and waits for /readyz. A start can fail for reasons
// that pass (the port of the killed process not yet free, NATS still recovering): it retries
// for as long as ctx allows.
func (c *cluster) startAPIServer(ctx context.Context) error {
	for {
		c.electedMark = c.apiserver.LogContains(electedLine)
		if err := c.apiserver.Start(); err != nil {
			return err
		}
		err := c.apiserver.WaitReady(ctx, c.apiserverReady)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		c.t.Logf("apiserver start failed, retrying: %v", err)
		c.apiserver.Stop()
		time.Sleep(100 * time.Millisecond)
	}
}

// electedLine is what the apiserver logs when its publisher wins the election.
const electedLine = `"publisher elected"`

// waitPublisherElected waits until the running apiserver's publisher has been elected, so
// that a kill lands while it publishes (after a crash the killed replica's lease must expire
// first, up to 5s). It gives up quietly after timeout: the kill is then just earlier.
func (c *cluster) waitPublisherElected(ctx context.Context, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if c.apiserver.LogContains(electedLine) > c.electedMark {
			return true
		}
		time.Sleep(25 * time.Millisecond)
	}
	return false
}

// newClient is a gRPC client of the apiserver that reconnects quickly: gRPC's default
// back-off grows to minutes, longer than the apiserver stays down in these tests.
func (c *cluster) newClient(t *testing.T) client.Interface {
	t.Helper()
	cl, err := client.NewGRPC(c.grpcAddr, grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
		MinConnectTimeout: 2 * time.Second,
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// newJetStream connects to NATS the way a long-running component does: reconnecting forever,
// so a NATS restart is an interruption, not an end.
func (c *cluster) newJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	return connectJetStream(t, c.natsURL)
}

// connectJetStream connects to NATS at url, reconnecting forever; the connection closes when
// the test ends.
func connectJetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
