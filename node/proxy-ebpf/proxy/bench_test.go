//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testnet"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// The service proxy's figures (make bench-services). Each prints its figures and a `goal:`
// line; none asserts a speed.

// syntheticServices is n services of per backends each: 10.96.0.0/12 addresses and pod
// addresses in 10.244.0.0/16 (never contacted: only programmed).
func syntheticServices(n, per int) map[ServicePort][]Backend {
	out := make(map[ServicePort][]Backend, n)
	for i := range n {
		vip := netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)})
		bs := make([]Backend, per)
		for j := range per {
			k := i*per + j
			bs[j] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 244, byte(k >> 8), byte(k)}), 8080)
		}
		out[ServicePort{VIP: vip, Port: 80, Proto: TCP}] = bs
	}
	return out
}

// BenchmarkProgramMaps: 10,000 services x 10 backends written into empty maps (a cold
// start), then the same set as kube-proxy's iptables rules through iptables-restore, legacy
// and nf_tables backends (nf_tables bounded to 1,000 services: it took ~400 s at 5,000 on
// this machine), in a network namespace of its own so no rule touches the machine's.
func BenchmarkProgramMaps(b *testing.B) {
	testnet.Require(b)
	cgroup := testnet.Cgroup(b)
	const services, per = 10000, 10
	set := syntheticServices(services, per)
	var bpfTimes []time.Duration
	for i := range 3 {
		pinDir := filepath.Join(testnet.BPFFS, testnet.Name("skiff-bench-"))
		start := time.Now()
		dp, err := OpenDatapath(DatapathConfig{PinDir: pinDir, CgroupPath: cgroup, ServiceRange: serviceRange})
		if err != nil {
			b.Fatal(err)
		}
		loaded := time.Since(start)
		start = time.Now()
		if err := dp.Apply(set); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		bpfTimes = append(bpfTimes, took)
		if i == 0 {
			fmt.Printf("bpf: programs loaded and attached in %s; %d entries written\n", loaded.Round(time.Microsecond), dp.Writes())
			got, ok, _ := dp.Lookup(ServicePort{VIP: netip.MustParseAddr("10.96.39.15"), Port: 80, Proto: TCP})
			if !ok || len(got) != per {
				b.Fatalf("service 9999 programmed as %v", got)
			}
			// A second sync of the same set writes nothing.
			if err := dp.Apply(set); err != nil {
				b.Fatal(err)
			}
			fmt.Printf("bpf: re-sync of the unchanged set wrote %d entries more\n", dp.Writes()-uint64(services*(per+1)))
		}
		_ = dp.Uninstall()
		_ = os.RemoveAll(pinDir)
	}
	slices.Sort(bpfTimes)
	bpf := bpfTimes[1]
	fmt.Printf("bpf: %d services x %d backends programmed from cold in %s (median of 3: %v)\n", services, per, bpf.Round(time.Microsecond), bpfTimes)
	fmt.Printf("goal: 10k x 10 programmed in under 100 ms: %s %s\n", bpf.Round(time.Microsecond), verdict(bpf < 100*time.Millisecond))

	ns := testnet.NewNetns(b)
	for _, c := range []struct {
		backend  string
		restore  string
		services int
	}{
		{"legacy", "iptables-legacy-restore", services},
		{"nf_tables", "iptables-nft-restore", 1000},
	} {
		if _, err := exec.LookPath(c.restore); err != nil {
			fmt.Printf("iptables %s: %s not installed, skipped\n", c.backend, c.restore)
			continue
		}
		rules := kubeProxyRules(syntheticServices(c.services, per))
		took, err := restore(ns, c.restore, rules)
		if err != nil {
			b.Fatalf("%s: %v", c.restore, err)
		}
		if err := restore2(ns, c.restore, "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"); err != nil {
			b.Logf("flush: %v", err)
		}
		cleanup(ns, c.backend)
		scaled := ""
		bpfAt := bpf
		if c.services != services {
			scaled = fmt.Sprintf(" (%d services: nf_tables is bounded here)", c.services)
		}
		fmt.Printf("iptables-restore %s: %d services x %d endpoints in %s%s; bpf maps %.0fx faster (%s at 10k)\n",
			c.backend, c.services, per, took.Round(time.Millisecond), scaled, float64(took)/float64(bpfAt), bpf.Round(time.Microsecond))
	}
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "NOT MET"
}

// kubeProxyRules renders set as kube-proxy's iptables mode does: KUBE-SERVICES jumps to a
// chain per service, which picks an endpoint chain with statistic --mode random, which DNATs.
func kubeProxyRules(set map[ServicePort][]Backend) string {
	var chains, rules strings.Builder
	chains.WriteString("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n")
	rules.WriteString("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n")
	i := 0
	for sp, bs := range set {
		svcChain := fmt.Sprintf("KUBE-SVC-%016X", i)
		fmt.Fprintf(&chains, ":%s - [0:0]\n", svcChain)
		fmt.Fprintf(&rules, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"default/svc-%d cluster IP\" -m tcp --dport %d -j %s\n",
			sp.VIP, i, sp.Port, svcChain)
		for j, be := range bs {
			sepChain := fmt.Sprintf("KUBE-SEP-%016X", i*len(bs)+j)
			fmt.Fprintf(&chains, ":%s - [0:0]\n", sepChain)
			if left := len(bs) - j; left > 1 {
				fmt.Fprintf(&rules, "-A %s -m comment --comment default/svc-%d -m statistic --mode random --probability %.10f -j %s\n",
					svcChain, i, 1/float64(left), sepChain)
			} else {
				fmt.Fprintf(&rules, "-A %s -m comment --comment default/svc-%d -j %s\n", svcChain, i, sepChain)
			}
			fmt.Fprintf(&rules, "-A %s -s %s/32 -m comment --comment default/svc-%d -j KUBE-MARK-MASQ\n", sepChain, be.Addr(), i)
			fmt.Fprintf(&rules, "-A %s -p tcp -m comment --comment default/svc-%d -m tcp -j DNAT --to-destination %s\n", sepChain, i, be)
		}
		i++
	}
	return chains.String() + rules.String() + "COMMIT\n"
}

// restore loads rules with one iptables-restore --noflush (as kube-proxy syncs) inside ns.
func restore(ns *testnet.Netns, bin, rules string) (time.Duration, error) {
	start := time.Now()
	err := restore2(ns, bin, rules)
	return time.Since(start), err
}

func restore2(ns *testnet.Netns, bin, rules string) error {
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "--noflush")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// cleanup flushes and deletes every chain of the nat table in ns (the namespace goes at the
// end of the test as well, taking any rule with it).
func cleanup(ns *testnet.Netns, backend string) {
	bin := "iptables-legacy"
	if backend == "nf_tables" {
		bin = "iptables-nft"
	}
	_ = exec.Command("ip", "netns", "exec", ns.Name, bin, "-t", "nat", "-F").Run()
	_ = exec.Command("ip", "netns", "exec", ns.Name, bin, "-t", "nat", "-X").Run()
}

// BenchmarkConnectLatency: a TCP connect (and close) through the service address against
// one straight to the backend, interleaved, from a client namespace to a backend namespace.
func BenchmarkConnectLatency(b *testing.B) {
	l := newLab(b)
	l.create(b, service("web", "10.96.100.10", port("", 80, "TCP", 8080)))
	l.create(b, endpoints("web", []string{"198.18.1.2"}, nil, &corev1.EndpointPort{Port: 8080, Protocol: "TCP"}))
	p := l.startProxy(b)
	waitProgrammed(b, p.Datapath(), ServicePort{VIP: netip.MustParseAddr("10.96.100.10"), Port: 80, Proto: TCP}, "198.18.1.2:8080")

	const rounds = 3000
	var vip, direct []time.Duration
	err := l.client.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second}
		for i := range 2 * rounds {
			addr := "10.96.100.10:80"
			if i%2 == 1 {
				addr = "198.18.1.2:8080"
			}
			start := time.Now()
			c, err := d.Dial("tcp4", addr)
			if err != nil {
				return err
			}
			took := time.Since(start)
			// Read the greeting so both paths do the same work afterwards.
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				return err
			}
			c.Close()
			if i%2 == 1 {
				direct = append(direct, took)
			} else {
				vip = append(vip, took)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	vp50, vp99 := percentiles(vip)
	dp50, dp99 := percentiles(direct)
	fmt.Printf("connect through the VIP: p50 %s p99 %s; direct: p50 %s p99 %s (%d each, interleaved)\n",
		vp50, vp99, dp50, dp99, rounds)
	ratio := float64(vp50) / float64(dp50)
	fmt.Printf("goal: VIP connect within 5%% of direct: p50 ratio %.3f, p99 ratio %.3f %s\n", ratio,
		float64(vp99)/float64(dp99), verdict(ratio <= 1.05))
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100]
}

// BenchmarkEndpointsToMap: an Endpoints update in the apiserver until the node's map holds
// it (apiserver, etcd, publisher, NATS, informer, proxy, map).
func BenchmarkEndpointsToMap(b *testing.B) {
	l := newLab(b)
	ctx := context.Background()
	l.create(b, service("web", "10.96.100.10", port("", 80, "TCP", 8080)))
	l.create(b, endpoints("web", []string{"198.18.1.2"}, nil, &corev1.EndpointPort{Port: 8080, Protocol: "TCP"}))
	p := l.startProxy(b)
	sp := ServicePort{VIP: netip.MustParseAddr("10.96.100.10"), Port: 80, Proto: TCP}
	waitProgrammed(b, p.Datapath(), sp, "198.18.1.2:8080")
	obj, err := l.env.Client.Get(ctx, kindOf(b, "endpoints"), "default", "web")
	if err != nil {
		b.Fatal(err)
	}
	ep := obj.(*corev1.Endpoints)
	const rounds = 200
	var lat []time.Duration
	for i := range rounds {
		// Alternate between one and two backends.
		want := 1 + (i+1)%2
		ep.Subsets[0].Addresses = ep.Subsets[0].Addresses[:1]
		if want == 2 {
			ep.Subsets[0].Addresses = append(ep.Subsets[0].Addresses, &corev1.EndpointAddress{Ip: "198.18.2.2"})
		}
		start := time.Now()
		updated, err := l.env.Client.Update(ctx, ep)
		if err != nil {
			b.Fatal(err)
		}
		ep = updated.(*corev1.Endpoints)
		for {
			got, _, err := p.Datapath().Lookup(sp)
			if err != nil {
				b.Fatal(err)
			}
			if len(got) == want {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatalf("map not updated after 10s")
			}
			time.Sleep(50 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	p50, p99 := percentiles(lat)
	fmt.Printf("Endpoints update -> map updated on the node: p50 %s p99 %s (%d updates, including the update request)\n",
		p50.Round(time.Microsecond), p99.Round(time.Microsecond), rounds)
	fmt.Printf("goal: Endpoints change -> map p99 under 50 ms: %s %s\n", p99.Round(time.Microsecond), verdict(p99 < 50*time.Millisecond))
}
