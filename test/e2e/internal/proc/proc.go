// Package proc supervises the real server processes of the end-to-end tests: it starts a
// binary with its output in a log file, kills it with SIGKILL (a crash, not a shutdown) and
// starts it again with the same arguments, so the same ports and data directories.
package proc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one supervised server. Its methods are safe for concurrent use.
type Process struct {
	Name    string
	Path    string
	Args    []string
	LogPath string // stdout and stderr of every run, appended

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{} // closed when the current run has exited
	runs  int
	kills int
}

// New describes a process; Start runs it.
func New(name, path, logPath string, args ...string) *Process {
	return &Process{Name: name, Path: path, Args: args, LogPath: logPath}
}

// Start runs the process. It fails if it is already running.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return fmt.Errorf("%s is already running", p.Name)
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.runs++
	fmt.Fprintf(logf, "===== %s run %d at %s: %s %s\n", p.Name, p.runs, time.Now().Format(time.RFC3339Nano),
		p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A test that times out panics without running its cleanups: the server must not outlive
	// it (see sysProcAttr).
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// running reports whether the current run has not exited. p.mu must be held.
func (p *Process) running() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Running reports whether the process is up.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// Exited is closed when the current run exits (nil before the first Start).
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Kill sends SIGKILL and waits until the process is gone: no shutdown hooks, no flushing, as
// in a crash or an OOM kill. Killing a process that is not running does nothing.
func (p *Process) Kill() {
	p.mu.Lock()
	if !p.running() {
		p.mu.Unlock()
		return
	}
	cmd, done := p.cmd, p.done
	p.kills++
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart kills the process (if running) and starts it again with the same arguments.
func (p *Process) Restart() error {
	p.Kill()
	return p.Start()
}

// Stop kills the process without counting it as a chaos kill (for cleanup).
func (p *Process) Stop() {
	p.mu.Lock()
	if !p.running() {
		p.mu.Unlock()
		return
	}
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Kills is how many times Kill ended a running process.
func (p *Process) Kills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kills
}

// Runs is how many times the process was started.
func (p *Process) Runs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.runs
}

// Pid is the current run's process id (0 if never started).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// WaitReady polls ready every 50ms until it succeeds, the process exits or ctx ends.
func (p *Process) WaitReady(ctx context.Context, ready func(context.Context) error) error {
	exited := p.Exited()
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(attempt)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited before it was ready (last check: %v)", p.Name, last)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last check: %v)", p.Name, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Log returns everything the process wrote, across runs.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LogContains counts the occurrences of s in the log (all runs).
func (p *Process) LogContains(s string) int {
	b, _ := os.ReadFile(p.LogPath)
	return bytes.Count(b, []byte(s))
}

// Tail returns the last n lines of the log.
func (p *Process) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Log(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort returns a loopback port nothing listens on right now. The process we start binds
// it a moment later; a collision is possible but rare, and it shows as a failed start.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
