package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
)

// DaemonConfig configures a containerd that the kubelet (or skiff up, or a test) starts
// itself, with its own root, state and socket: never the host's or Docker's containerd.
type DaemonConfig struct {
	// Dir holds everything: config.toml, root/, state/, containerd.sock, containerd.log.
	Dir string
	// Binary is the containerd executable (default: "containerd" on PATH).
	Binary string
	Logger *slog.Logger
}

// Daemon is a running containerd started by StartDaemon.
type Daemon struct {
	Address string // its gRPC socket
	Root    string // its root directory (images, snapshots)
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Requirements reports what this host lacks to run containers: containerd and runc on PATH,
// CNI plugins. An empty result means everything is there.
func Requirements() []string {
	var missing []string
	if _, err := exec.LookPath("containerd"); err != nil {
		missing = append(missing, "containerd (Debian: apt-get install containerd)")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		missing = append(missing, "runc (Debian: apt-get install runc)")
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containers, cgroups and network namespaces need it)")
	}
	return missing
}

// StartDaemon writes a configuration (the CRI plugin disabled: the kubelet speaks to
// containerd's own API) and starts containerd, returning once its socket answers.
func StartDaemon(ctx context.Context, cfg DaemonConfig) (*Daemon, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	bin := cfg.Binary
	if bin == "" {
		bin = "containerd"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("containerd not found: %w (Debian: apt-get install containerd runc)", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("containerd dir: %w", err)
	}
	d := &Daemon{Address: filepath.Join(dir, "containerd.sock"), Root: filepath.Join(dir, "root"), exited: make(chan struct{})}
	if len(d.Address) > 100 {
		return nil, fmt.Errorf("containerd socket path %s is too long for a unix socket: use a shorter --data-dir", d.Address)
	}
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
oom_score = -999

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, d.Root, filepath.Join(dir, "state"), d.Address, d.Address+".ttrpc", filepath.Join(dir, "opt"))
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	_ = os.Remove(d.Address) // a stale socket of a previous run
	logFile, err := os.OpenFile(filepath.Join(dir, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(path, "--config", confPath)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C to the parent does not reach it, the parent stops it
	// in order. No Pdeathsig: it fires when the forking OS thread ends, which Go does to
	// threads that entered network namespaces.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		logFile.Close()
		close(d.exited)
	}()
	if err := d.waitReady(ctx); err != nil {
		_ = d.Stop()
		tail, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
		return nil, fmt.Errorf("containerd did not come up: %w; its log ends: %s", err, lastLines(string(tail), 5))
	}
	log.Info("containerd started", "pid", d.cmd.Process.Pid, "address", d.Address, "root", d.Root)
	return d, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (d *Daemon) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("containerd exited: %v", d.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(d.Address); err != nil {
			continue
		}
		c, err := containerd.New(d.Address, containerd.WithTimeout(time.Second))
		if err != nil {
			continue
		}
		serving, err := c.IsServing(ctx)
		c.Close()
		if err == nil && serving {
			return nil
		}
	}
}

// Stop ends containerd (SIGTERM, then SIGKILL after 10 s). Containers keep running under their
// shims, as they do when a node's containerd restarts; a new daemon on the same Dir adopts them.
func (d *Daemon) Stop() error {
	select {
	case <-d.exited:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	var ee *exec.ExitError
	if d.waitErr != nil && !errors.As(d.waitErr, &ee) {
		return d.waitErr
	}
	return nil
}
