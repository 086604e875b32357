//go:build linux

package up

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/internal/kernel"
	"github.com/skiff-project/skiff/node/proxy-ebpf/proxy"
	"github.com/skiff-project/skiff/pkg/serviceip"
	"github.com/skiff-project/skiff/services/dns/dns"
)

// serviceComponents are the local node's service proxy and the cluster DNS, when asked for
// and when the machine allows: the proxy needs root, cgroup2 and BPF; it balances every
// process of the machine (it attaches at the cgroup2 root), and pods and host processes reach
// the DNS through it at kube-dns's cluster IP. What cannot run is said on out, with why.
//
// clusterDNS is the address pods should use as their nameserver ("" when the DNS or the proxy
// that makes kube-dns's cluster IP answer does not run).
func serviceComponents(o Options, env *component.Env, out io.Writer) (runs map[string]func(context.Context) error, clusterDNS string) {
	say := func(format string, args ...any) {
		if out != nil {
			fmt.Fprintf(out, format+"\n", args...)
		}
	}
	runs = map[string]func(context.Context) error{}
	cidr := o.ServiceClusterIPRange
	if cidr == "" {
		cidr = serviceip.DefaultRange
	}
	rng, err := serviceip.ParseRange(cidr)
	if err != nil {
		say("  proxy: off: %v", err)
		return runs, ""
	}
	proxyOn := false
	if o.Proxy {
		if p, err := newLocalProxy(rng, o.DataDir, env); err != nil {
			say("  proxy: off: %v", err)
			env.Log.Warn("service proxy not running", "reason", err.Error())
		} else {
			runs["proxy"] = p.Run
			proxyOn = true
			say("  proxy: eBPF socket load balancing for %s on this machine", rng)
		}
	}
	if o.DNSAddr != "" {
		adv, err := dns.DefaultAdvertiseAddr()
		if err != nil {
			say("  DNS:   off: %v", err)
			return runs, ""
		}
		srv, err := dns.New(dns.Config{Informers: env.Informers, Domain: o.ClusterDomain, Addr: o.DNSAddr, Logger: env.Log,
			Metrics: env.Metrics, Register: &dns.RegistrationConfig{Client: env.Client, ClusterIP: rng.DNSIP(),
				Endpoint: netip.AddrPortFrom(adv, 0), Identity: env.Identity}})
		if err != nil {
			say("  DNS:   off: %v", err)
			return runs, ""
		}
		runs["dns"] = srv.Run
		if proxyOn {
			say("  DNS:   %s at kube-system/kube-dns %s:53 (serving on %s, %s)", dns.DefaultDomainOr(o.ClusterDomain), rng.DNSIP(), o.DNSAddr, adv)
			clusterDNS = rng.DNSIP().String()
		} else {
			say("  DNS:   %s on %s (no proxy: %s:53 does not answer)", dns.DefaultDomainOr(o.ClusterDomain), o.DNSAddr, rng.DNSIP())
		}
	}
	return runs, clusterDNS
}

// newLocalProxy loads the proxy for this machine: attached at the cgroup2 root, its maps
// pinned in a directory of this data dir's own (another `skiff up` on the machine, or a
// test's, pins elsewhere), detached and unpinned when it stops.
func newLocalProxy(rng *serviceip.Range, dataDir string, env *component.Env) (*proxy.Proxy, error) {
	if err := kernel.CanLoadBPF(); err != nil {
		return nil, err
	}
	root, err := kernel.Cgroup2Root()
	if err != nil {
		return nil, err
	}
	return proxy.New(proxy.Config{
		Datapath:  proxy.DatapathConfig{PinDir: ProxyPinDir(dataDir), CgroupPath: root, ServiceRange: rng.Prefix()},
		Informers: env.Informers, Logger: env.Log.With("component", "proxy"), Metrics: env.Metrics,
		UninstallOnStop: true,
	})
}

// ProxyPinDir is where `skiff up` on dataDir pins its proxy's maps and links:
// /sys/fs/bpf/skiff/up-HASH, HASH naming the data dir's absolute path. A run that crashed
// leaves them there; the next run on the same data dir takes them over.
func ProxyPinDir(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(kernel.BPFFS, "skiff", "up-"+hex.EncodeToString(sum[:6]))
}
