//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/internal/testnet"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
)

var serviceRange = netip.MustParsePrefix("10.96.0.0/12")

// lab is a control plane, a cgroup holding the test process, a client namespace with no
// default route, and three backends b1..b3 in namespaces of their own, each serving TCP and
// UDP on 198.18.N.2:8080.
type lab struct {
	env      *testenv.Env
	cgroup   string
	pinDir   string
	client   *testnet.Netns
	backends []*testnet.Backend
}

func newLab(t testing.TB) *lab {
	t.Helper()
	testnet.Require(t)
	l := &lab{env: testenv.Start(t)}
	l.cgroup = testnet.Cgroup(t)
	l.pinDir = filepath.Join(testnet.BPFFS, testnet.Name("skiff-test-"))
	t.Cleanup(func() { _ = os.RemoveAll(l.pinDir) }) // unpinning the links detaches them
	l.client = testnet.NewNetns(t)
	for i := 1; i <= 3; i++ {
		ns := testnet.NewNetns(t)
		testnet.Link(t, l.client, fmt.Sprintf("198.18.%d.1/24", i), ns, fmt.Sprintf("198.18.%d.2/24", i))
		addr := netip.MustParseAddrPort(fmt.Sprintf("198.18.%d.2:8080", i))
		l.backends = append(l.backends, testnet.StartBackend(t, ns, fmt.Sprintf("b%d", i), addr))
	}
	return l
}

// runningProxy is one run of the proxy; stop ends it as a SIGTERM would (programs and maps
// stay).
type runningProxy struct {
	*Proxy
	metrics *prometheus.Registry
	stop    func()
}

func (l *lab) startProxy(t testing.TB) *runningProxy {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	factory := informer.NewFactory(l.env.Client, l.env.JetStream(t), log)
	reg := prometheus.NewRegistry()
	synced := make(chan struct{})
	p, err := New(Config{
		Datapath:  DatapathConfig{PinDir: l.pinDir, CgroupPath: l.cgroup, ServiceRange: serviceRange},
		Informers: factory, Logger: log, Metrics: reg, OnSynced: func() { close(synced) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-synced:
	case err := <-done:
		t.Fatalf("proxy stopped before syncing: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("proxy did not sync in 30s")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
		factory.Shutdown()
	}
	t.Cleanup(stop)
	return &runningProxy{Proxy: p, metrics: reg, stop: stop}
}

func service(name, vip string, ports ...*corev1.ServicePort) *corev1.Service {
	return &corev1.Service{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &corev1.ServiceSpec{ClusterIp: vip, Selector: map[string]string{"app": name}, Ports: ports}}
}

func port(name string, p int32, proto string, target int32) *corev1.ServicePort {
	return &corev1.ServicePort{Name: name, Port: p, Protocol: proto,
		TargetPort: &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: target}}}
}

// endpoints is what the Endpoints controller writes for a service: ready and not-ready
// addresses and the ports (named as the service's, numbered as the targetPort).
func endpoints(name string, ready, notReady []string, ports ...*corev1.EndpointPort) *corev1.Endpoints {
	addrs := func(ips []string) []*corev1.EndpointAddress {
		var out []*corev1.EndpointAddress
		for _, ip := range ips {
			out = append(out, &corev1.EndpointAddress{Ip: ip})
		}
		return out
	}
	return &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Subsets: []*corev1.EndpointSubset{{Addresses: addrs(ready), NotReadyAddresses: addrs(notReady), Ports: ports}}}
}

func (l *lab) create(t testing.TB, obj scheme.Object) {
	t.Helper()
	if _, err := l.env.Client.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

func kindOf(t testing.TB, resource string) *scheme.Kind {
	t.Helper()
	k, err := scheme.Default().ForName(resource)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// waitProgrammed waits until the kernel's map holds want for sp.
func waitProgrammed(t testing.TB, dp *Datapath, sp ServicePort, want ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, ok, err := dp.Lookup(sp)
		if err != nil {
			t.Fatal(err)
		}
		var gotS []string
		for _, b := range got {
			gotS = append(gotS, b.String())
		}
		if ok && slices.Equal(gotS, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s programmed as %v (present %v); want %v", sp, gotS, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dial connects from the client namespace.
func (l *lab) dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := l.client.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 3*time.Second)
		return err
	})
	return c, err
}

// ask connects to addr over TCP and returns the backend's name and the peer address the
// socket reports (getpeername).
func (l *lab) ask(t testing.TB, addr string) (name string, peer netip.AddrPort) {
	t.Helper()
	c, err := l.dial("tcp4", addr)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	defer c.Close()
	name, err = bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sa unix.Sockaddr
	_ = raw.Control(func(fd uintptr) { sa, err = unix.Getpeername(int(fd)) })
	if err != nil {
		t.Fatal(err)
	}
	in4 := sa.(*unix.SockaddrInet4)
	return strings.TrimSpace(name), netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
}

func isRotation(seq []string, members ...string) bool {
	n := len(members)
	if len(seq) < n {
		return false
	}
	first := slices.Clone(seq[:n])
	slices.Sort(first)
	if !slices.Equal(first, members) {
		return false
	}
	for i := n; i < len(seq); i++ {
		if seq[i] != seq[i-n] {
			return false
		}
	}
	return true
}

func TestRoundRobinTCP(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	// The fourth address is not ready (and nothing listens there): it must get nothing.
	l.create(t, service("web", "10.96.100.10", port("", 80, "TCP", 8080)))
	l.create(t, endpoints("web", []string{"198.18.1.2", "198.18.2.2", "198.18.3.2"}, []string{"198.18.3.9"},
		&corev1.EndpointPort{Port: 8080, Protocol: "TCP"}))
	p := l.startProxy(t)
	sp := ServicePort{VIP: netip.MustParseAddr("10.96.100.10"), Port: 80, Proto: TCP}
	waitProgrammed(t, p.Datapath(), sp, "198.18.1.2:8080", "198.18.2.2:8080", "198.18.3.2:8080")

	vip := "10.96.100.10:80"
	var seq []string
	for range 9 {
		name, peer := l.ask(t, vip)
		seq = append(seq, name)
		if peer.String() != vip {
			t.Errorf("getpeername shows %s; want the service address %s", peer, vip)
		}
	}
	if !isRotation(seq, "b1", "b2", "b3") {
		t.Errorf("9 connects reached %v; want b1, b2, b3 in strict rotation", seq)
	}
	counts, err := p.Datapath().Counts()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range counts {
		if c.Service == sp && c.Count != 3 {
			t.Errorf("backend %s counted %d connections; want 3", c.Backend, c.Count)
		}
	}
	if n := testutil.CollectAndCount(p.metrics, "skiff_proxy_backend_connections_total"); n != 3 {
		t.Errorf("%d backend counter series; want 3", n)
	}
	metric := `skiff_proxy_backend_connections_total{backend="198.18.2.2:8080",namespace="default",port="",protocol="TCP",service="web"} 3`
	if err := testutil.GatherAndCompare(p.metrics, strings.NewReader(
		"# HELP skiff_proxy_backend_connections_total Connections (and unconnected UDP datagrams) the proxy sent to each backend of each service port.\n"+
			"# TYPE skiff_proxy_backend_connections_total counter\n"+metric+"\n"+
			strings.Replace(metric, "198.18.2.2", "198.18.1.2", 1)+"\n"+strings.Replace(metric, "198.18.2.2", "198.18.3.2", 1)+"\n"),
		"skiff_proxy_backend_connections_total"); err != nil {
		t.Errorf("metrics: %v", err)
	}

	// Removing an endpoint stops traffic to it.
	ep, err := l.env.Client.Get(ctx, kindOf(t, "endpoints"), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	e := ep.(*corev1.Endpoints)
	e.Subsets[0].Addresses = slices.DeleteFunc(e.Subsets[0].Addresses, func(a *corev1.EndpointAddress) bool { return a.Ip == "198.18.2.2" })
	if _, err := l.env.Client.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	waitProgrammed(t, p.Datapath(), sp, "198.18.1.2:8080", "198.18.3.2:8080")
	seq = nil
	for range 6 {
		name, _ := l.ask(t, vip)
		seq = append(seq, name)
	}
	if !isRotation(seq, "b1", "b3") {
		t.Errorf("after removing b2, 6 connects reached %v; want b1 and b3 alternating", seq)
	}
}

func TestRoundRobinUDP(t *testing.T) {
	l := newLab(t)
	l.create(t, service("dns", "10.96.100.53", port("dns", 53, "UDP", 8080)))
	l.create(t, endpoints("dns", []string{"198.18.1.2", "198.18.2.2", "198.18.3.2"}, nil,
		&corev1.EndpointPort{Name: "dns", Port: 8080, Protocol: "UDP"}))
	p := l.startProxy(t)
	vip := netip.MustParseAddrPort("10.96.100.53:53")
	waitProgrammed(t, p.Datapath(), ServicePort{VIP: vip.Addr(), Port: 53, Proto: UDP},
		"198.18.1.2:8080", "198.18.2.2:8080", "198.18.3.2:8080")

	// One unconnected socket: each datagram is balanced on its own.
	var conn *net.UDPConn
	if err := l.client.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var seq []string
	buf := make([]byte, 64)
	for range 9 {
		if _, err := conn.WriteToUDPAddrPort([]byte("q"), vip); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if from != vip {
			t.Errorf("reply came from %s; want the service address %s", from, vip)
		}
		seq = append(seq, string(buf[:n]))
	}
	if !isRotation(seq, "b1", "b2", "b3") {
		t.Errorf("9 datagrams reached %v; want b1, b2, b3 in strict rotation", seq)
	}
}

// A service address with no ready backend, and an address of the range that is no
// service's, are refused at once, over TCP and UDP: nothing leaves for an address no one
// serves.
func TestNoBackendIsRefused(t *testing.T) {
	l := newLab(t)
	l.create(t, service("empty", "10.96.100.20", port("http", 80, "TCP", 8080), port("u", 81, "UDP", 8080)))
	l.create(t, endpoints("empty", nil, []string{"198.18.1.2"}, &corev1.EndpointPort{Name: "http", Port: 8080, Protocol: "TCP"}))
	p := l.startProxy(t)
	waitProgrammed(t, p.Datapath(), ServicePort{VIP: netip.MustParseAddr("10.96.100.20"), Port: 80, Proto: TCP})

	for _, addr := range []string{"10.96.100.20:80", "10.96.100.21:80", "10.96.100.20:443"} {
		c, err := l.dial("tcp4", addr)
		if c != nil {
			c.Close()
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("connect %s: %v; want ECONNREFUSED", addr, err)
		}
	}
	var conn *net.UDPConn
	if err := l.client.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort([]byte("q"), netip.MustParseAddrPort("10.96.100.20:81")); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("UDP send to a service with no backend: %v; want ECONNREFUSED", err)
	}
}

// The proxy restarts without dropping an established connection: while it is down the
// pinned programs and maps keep balancing, the new run writes nothing when nothing changed,
// keeps the rotation, and follows changes again.
func TestRestartKeepsTraffic(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	l.create(t, service("web", "10.96.100.10", port("", 80, "TCP", 8080)))
	l.create(t, endpoints("web", []string{"198.18.1.2", "198.18.2.2", "198.18.3.2"}, nil,
		&corev1.EndpointPort{Port: 8080, Protocol: "TCP"}))
	p := l.startProxy(t)
	sp := ServicePort{VIP: netip.MustParseAddr("10.96.100.10"), Port: 80, Proto: TCP}
	waitProgrammed(t, p.Datapath(), sp, "198.18.1.2:8080", "198.18.2.2:8080", "198.18.3.2:8080")

	long, err := l.dial("tcp4", "10.96.100.10:80")
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	r := bufio.NewReader(long)
	first, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	ask := func() {
		name, _ := l.ask(t, "10.96.100.10:80")
		seq = append(seq, name)
	}
	ask()
	ask()
	p.stop()
	ask() // no proxy process: the kernel still balances
	ask()

	p2 := l.startProxy(t)
	if w := p2.Datapath().Writes(); w != 0 {
		t.Errorf("restart with nothing changed wrote %d map entries; want 0", w)
	}
	ask()
	ask()
	if !isRotation(seq, "b1", "b2", "b3") {
		t.Errorf("connects across the restart reached %v; want one unbroken rotation", seq)
	}
	for range 3 {
		if _, err := long.Write([]byte("ping")); err != nil {
			t.Fatalf("established connection broken by the restart: %v", err)
		}
		if again, err := r.ReadString('\n'); err != nil || again != first {
			t.Fatalf("established connection after the restart: %q %v; want %q", again, err, first)
		}
	}

	ep, err := l.env.Client.Get(ctx, kindOf(t, "endpoints"), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	e := ep.(*corev1.Endpoints)
	e.Subsets[0].Addresses = e.Subsets[0].Addresses[:1]
	if _, err := l.env.Client.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	waitProgrammed(t, p2.Datapath(), sp, "198.18.1.2:8080")
	if name, _ := l.ask(t, "10.96.100.10:80"); name != "b1" {
		t.Errorf("after the change followed by the new run: %s; want b1", name)
	}
}
