//go:build linux

// Package testnet builds, for a test run as root, the network the service proxy's tests
// need: network namespaces joined by veth pairs (addresses that exist only inside them), a
// cgroup2 group the test process moves into (so that programs attached there see the
// test's sockets and no one else's), and bpffs. Everything is removed when the test ends.
//
// Tests send traffic only inside namespaces they made: a client socket lives in a
// namespace with no default route, so an address the proxy failed to translate goes
// nowhere instead of leaving the machine.
package testnet

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/kernel"
)

// BPFFS is where bpffs is mounted.
const BPFFS = kernel.BPFFS

// Require skips the test unless it runs as root, and fails it when root cannot load BPF
// programs here (no cgroup2, no BTF, bpffs cannot be mounted): CI runs as root on a kernel
// that can, so a skip there would hide a broken machine. It mounts bpffs when it is not
// mounted.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, cgroups, BPF)")
	}
	if err := kernel.CanLoadBPF(); err != nil {
		t.Fatalf("cannot load BPF programs here: %v", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
}

var seq atomic.Int64

// Name is a name unique to this test process, for namespaces, interfaces and cgroups.
func Name(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, os.Getpid()%100000, seq.Add(1))
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Netns is a network namespace the test made.
type Netns struct {
	Name string
	fd   int
}

// NewNetns makes a network namespace with its loopback up; it is deleted when the test ends.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	name := Name("skt")
	if err := run("ip", "netns", "add", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run("ip", "netns", "del", name) })
	fd, err := unix.Open(filepath.Join("/var/run/netns", name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	n := &Netns{Name: name, fd: fd}
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

// MustRun runs a command inside the namespace.
func (n *Netns) MustRun(t testing.TB, args ...string) {
	t.Helper()
	if err := run(append([]string{"ip", "netns", "exec", n.Name}, args...)...); err != nil {
		t.Fatal(err)
	}
}

// Do runs fn on a thread inside the namespace: sockets fn creates belong to it for their
// whole life, whichever thread uses them later.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return // the thread stays locked and dies with the goroutine
		}
		err = fn()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Link joins namespaces a and b with a veth pair, a's end addressed aAddr and b's bAddr
// (prefixes like 198.18.1.1/24).
func Link(t testing.TB, a *Netns, aAddr string, b *Netns, bAddr string) {
	t.Helper()
	ea, eb := Name("va"), Name("vb")
	if err := run("ip", "link", "add", ea, "netns", a.Name, "type", "veth", "peer", "name", eb, "netns", b.Name); err != nil {
		t.Fatal(err)
	}
	a.MustRun(t, "ip", "addr", "add", aAddr, "dev", ea)
	a.MustRun(t, "ip", "link", "set", ea, "up")
	b.MustRun(t, "ip", "addr", "add", bAddr, "dev", eb)
	b.MustRun(t, "ip", "link", "set", eb, "up")
}

// Cgroup makes a cgroup2 group and moves the test process into it until the test ends, so
// that BPF programs attached to it act on the test's sockets only.
func Cgroup(t testing.TB) string {
	t.Helper()
	root, err := kernel.Cgroup2Root()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := kernel.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, Name("skiff-test-"))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := moveSelf(dir); err != nil {
		os.Remove(dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := moveSelf(filepath.Join(root, orig)); err != nil {
			t.Errorf("move back to cgroup %s: %v", orig, err)
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup %s: %v", dir, err)
		}
	})
	return dir
}

func moveSelf(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(os.Getpid())), 0)
}

// Backend is a server in a namespace that answers with its own name: each TCP connection
// gets "NAME\n" and is closed; each UDP datagram is answered with "NAME".
type Backend struct {
	Name string
	Addr netip.AddrPort
	tcp  net.Listener
	udp  net.PacketConn
}

// StartBackend serves at addr inside ns (TCP and UDP on the same port) until the test ends.
func StartBackend(t testing.TB, ns *Netns, name string, addr netip.AddrPort) *Backend {
	t.Helper()
	b := &Backend{Name: name, Addr: addr}
	err := ns.Do(func() error {
		var err error
		if b.tcp, err = net.Listen("tcp4", addr.String()); err != nil {
			return err
		}
		b.udp, err = net.ListenPacket("udp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	t.Cleanup(func() { b.tcp.Close(); b.udp.Close() })
	go func() {
		for {
			c, err := b.tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte(name + "\n"))
				// Keep answering on a connection that sends: "ping" -> NAME, for tests of
				// long-lived connections.
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := c.Write([]byte(name + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := b.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = b.udp.WriteTo([]byte(name), from)
		}
	}()
	return b
}
