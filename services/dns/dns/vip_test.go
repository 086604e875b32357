//go:build linux

package dns

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/internal/testnet"
	"github.com/skiff-project/skiff/node/proxy-ebpf/proxy"
	"github.com/skiff-project/skiff/pkg/informer"
)

// Pods reach the cluster DNS at kube-dns's cluster IP: the server registers its own address
// as the Service's endpoint and the proxy sends queries there, over UDP and TCP, with the
// answers coming from the cluster IP.
func TestDNSThroughClusterIP(t *testing.T) {
	testnet.Require(t)
	env := testenv.Start(t)
	cgroup := testnet.Cgroup(t)
	pinDir := filepath.Join(testnet.BPFFS, testnet.Name("skiff-test-"))
	t.Cleanup(func() { _ = os.RemoveAll(pinDir) })
	client, server := testnet.NewNetns(t), testnet.NewNetns(t)
	testnet.Link(t, client, "198.18.1.1/24", server, "198.18.1.2/24")

	// The DNS server listens inside its namespace, at the address it advertises.
	startServerIn(t, env, Config{Addr: "198.18.1.2:1053", Register: &RegistrationConfig{Client: env.Client,
		ClusterIP: netip.MustParseAddr("10.96.0.10"), Endpoint: netip.MustParseAddrPort("198.18.1.2:0"), Identity: "dns-test"}}, server)

	factory := informer.NewFactory(env.Client, env.JetStream(t), quiet())
	synced := make(chan struct{})
	p, err := proxy.New(proxy.Config{Datapath: proxy.DatapathConfig{PinDir: pinDir, CgroupPath: cgroup,
		ServiceRange: netip.MustParsePrefix("10.96.0.0/12")}, Informers: factory, Logger: quiet(),
		OnSynced: func() { close(synced) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; factory.Shutdown() })
	<-synced

	vip := netip.MustParseAddrPort("10.96.0.10:53")
	for _, network := range []string{"udp", "tcp"} {
		eventually(t, "kube-dns answers at "+vip.String()+" over "+network, func() error {
			var resp *dns.Msg
			var err error
			_ = client.Do(func() error {
				c := &dns.Client{Net: network, Timeout: time.Second}
				conn, derr := c.Dial(vip.String())
				if derr != nil {
					err = derr
					return nil
				}
				defer conn.Close()
				m := new(dns.Msg)
				m.SetQuestion("kubernetes.default.svc.cluster.local.", dns.TypeA)
				resp, _, err = c.ExchangeWithConn(m, conn)
				if err == nil && conn.RemoteAddr().String() != vip.String() {
					err = mismatch{[]string{conn.RemoteAddr().String()}, []string{vip.String()}}
				}
				return nil
			})
			if err != nil {
				return err
			}
			return cmpStrings(records(resp.Answer), "kubernetes.default.svc.cluster.local. A 10.96.0.1")
		})
	}
}
