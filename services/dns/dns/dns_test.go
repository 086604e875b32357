package dns

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/internal/testnet"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/informer"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer runs a DNS server on the environment's bus, on loopback, until the test ends.
func startServer(t testing.TB, env *testenv.Env, cfg Config) *Server {
	t.Helper()
	return startServerIn(t, env, cfg, nil)
}

// startServerIn is startServer with the sockets opened in ns (nil: this namespace).
func startServerIn(t testing.TB, env *testenv.Env, cfg Config, ns *testnet.Netns) *Server {
	t.Helper()
	cfg.Informers = informer.NewFactory(env.Client, env.JetStream(t), quiet())
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	serving := make(chan struct{})
	cfg.OnServing = func(netip.AddrPort) { close(serving) }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ns != nil {
		if err := ns.Do(s.Listen); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-serving:
	case err := <-done:
		t.Fatalf("DNS server stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("DNS server not serving after 30s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("DNS server: %v", err)
		}
		cfg.Informers.Shutdown()
	})
	return s
}

func query(t testing.TB, addr netip.AddrPort, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	resp, _, err := c.Exchange(m, addr.String())
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

// records renders the answer section as "TYPE value" strings, sorted.
func records(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.Hdr.Name+" A "+r.A.String())
		case *dns.SRV:
			out = append(out, r.Hdr.Name+" SRV "+r.Target+" "+itoa(r.Port))
		case *dns.CNAME:
			out = append(out, r.Hdr.Name+" CNAME "+r.Target)
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

func fmtUint(p uint16) string { return strconv.Itoa(int(p)) }

func kind(t testing.TB, resource string) *scheme.Kind {
	t.Helper()
	k, err := scheme.Default().ForName(resource)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func svc(name, ns, clusterIP string, ports ...*corev1.ServicePort) *corev1.Service {
	return &corev1.Service{Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: &corev1.ServiceSpec{ClusterIp: clusterIP, Selector: map[string]string{"app": name}, Ports: ports}}
}

// eventually retries check until it passes or 10s pass.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type mismatch struct{ got, want []string }

func (m mismatch) Error() string {
	return "got " + strings.Join(m.got, "; ") + " want " + strings.Join(m.want, "; ")
}

func expect(t testing.TB, s *Server, network, name string, qtype uint16, rcode int, want ...string) error {
	resp := query(t, s.Addr(), network, name, qtype)
	got := records(resp.Answer)
	if resp.Rcode != rcode {
		got = append(got, "rcode "+dns.RcodeToString[resp.Rcode])
		want = append(slices.Clone(want), "rcode "+dns.RcodeToString[rcode])
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return mismatch{got, want}
	}
	return nil
}

func TestServiceRecords(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c := env.Client
	web := svc("web", "default", "10.96.5.5",
		&corev1.ServicePort{Name: "http", Port: 80, Protocol: "TCP"},
		&corev1.ServicePort{Name: "dns", Port: 53, Protocol: "UDP"})
	if _, err := c.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	db := svc("db", "default", "None", &corev1.ServicePort{Name: "pg", Port: 5432, Protocol: "TCP"})
	if _, err := c.Create(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Subsets: []*corev1.EndpointSubset{{
			Addresses:         []*corev1.EndpointAddress{{Ip: "10.244.0.7", Hostname: "db-0"}, {Ip: "10.244.0.8"}},
			NotReadyAddresses: []*corev1.EndpointAddress{{Ip: "10.244.0.9"}},
			Ports:             []*corev1.EndpointPort{{Name: "pg", Port: 5433, Protocol: "TCP"}},
		}}}); err != nil {
		t.Fatal(err)
	}
	ext := &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "ext", Namespace: "default"},
		Spec: &corev1.ServiceSpec{Type: "ExternalName", ExternalName: "db.example.com"}}
	if _, err := c.Create(ctx, ext); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, env, Config{})
	const z = ".svc.cluster.local."

	for _, network := range []string{"udp", "tcp"} {
		checks := []struct {
			name  string
			qtype uint16
			rcode int
			want  []string
		}{
			{"web.default" + z, dns.TypeA, dns.RcodeSuccess, []string{"web.default" + z + " A 10.96.5.5"}},
			{"WEB.Default" + z, dns.TypeA, dns.RcodeSuccess, []string{"web.default" + z + " A 10.96.5.5"}},
			{"kubernetes.default" + z, dns.TypeA, dns.RcodeSuccess, []string{"kubernetes.default" + z + " A 10.96.0.1"}},
			{"web.default" + z, dns.TypeAAAA, dns.RcodeSuccess, nil}, // exists, no IPv6: NODATA
			{"_http._tcp.web.default" + z, dns.TypeSRV, dns.RcodeSuccess, []string{"_http._tcp.web.default" + z + " SRV web.default" + z + " 80"}},
			{"_dns._udp.web.default" + z, dns.TypeSRV, dns.RcodeSuccess, []string{"_dns._udp.web.default" + z + " SRV web.default" + z + " 53"}},
			{"_http._udp.web.default" + z, dns.TypeSRV, dns.RcodeNameError, nil},
			{"_nope._tcp.web.default" + z, dns.TypeSRV, dns.RcodeNameError, nil},
			{"nope.default" + z, dns.TypeA, dns.RcodeNameError, nil},
			{"web.nope" + z, dns.TypeA, dns.RcodeNameError, nil},
			{"web.default.pod.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
			// Headless: the ready addresses only; hostnames and SRV per endpoint.
			{"db.default" + z, dns.TypeA, dns.RcodeSuccess, []string{"db.default" + z + " A 10.244.0.7", "db.default" + z + " A 10.244.0.8"}},
			{"db-0.db.default" + z, dns.TypeA, dns.RcodeSuccess, []string{"db-0.db.default" + z + " A 10.244.0.7"}},
			{"10-244-0-8.db.default" + z, dns.TypeA, dns.RcodeSuccess, []string{"10-244-0-8.db.default" + z + " A 10.244.0.8"}},
			{"10-244-0-9.db.default" + z, dns.TypeA, dns.RcodeNameError, nil},
			{"_pg._tcp.db.default" + z, dns.TypeSRV, dns.RcodeSuccess, []string{
				"_pg._tcp.db.default" + z + " SRV 10-244-0-8.db.default" + z + " 5433",
				"_pg._tcp.db.default" + z + " SRV db-0.db.default" + z + " 5433"}},
			{"ext.default" + z, dns.TypeA, dns.RcodeSuccess, []string{"ext.default" + z + " CNAME db.example.com."}},
		}
		for _, c := range checks {
			if err := expect(t, s, network, c.name, c.qtype, c.rcode, c.want...); err != nil {
				t.Errorf("%s %s %s: %v", network, c.name, dns.TypeToString[c.qtype], err)
			}
		}
	}
	// NXDOMAIN carries the zone's SOA; names outside the zone are refused.
	if resp := query(t, s.Addr(), "udp", "nope.default"+z, dns.TypeA); len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA || !resp.Authoritative {
		t.Errorf("NXDOMAIN authority %v (aa %v); want the SOA of cluster.local.", resp.Ns, resp.Authoritative)
	}
	if resp := query(t, s.Addr(), "udp", "example.com.", dns.TypeA); resp.Rcode != dns.RcodeRefused {
		t.Errorf("example.com: %s; want REFUSED (not forwarded)", dns.RcodeToString[resp.Rcode])
	}
	// SRV answers carry the target's address.
	if resp := query(t, s.Addr(), "udp", "_http._tcp.web.default"+z, dns.TypeSRV); len(resp.Extra) != 1 || records(resp.Extra)[0] != "web.default"+z+" A 10.96.5.5" {
		t.Errorf("SRV additional section %v; want the A record of web", records(resp.Extra))
	}
}

// The answers follow the Services and Endpoints as they change, through the bus.
func TestRecordsFollowChanges(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	s := startServer(t, env, Config{})
	const name = "api.default.svc.cluster.local."
	if err := expect(t, s, "udp", name, dns.TypeA, dns.RcodeNameError); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.Create(ctx, svc("api", "default", "10.96.7.7", &corev1.ServicePort{Name: "http", Port: 80})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new service resolves", func() error {
		return expect(t, s, "udp", name, dns.TypeA, dns.RcodeSuccess, name+" A 10.96.7.7")
	})
	eventually(t, "new named port has SRV", func() error {
		return expect(t, s, "udp", "_http._tcp."+name, dns.TypeSRV, dns.RcodeSuccess, "_http._tcp."+name+" SRV "+name+" 80")
	})
	// A headless service's A records follow its Endpoints' readiness.
	hname := "pods.default.svc.cluster.local."
	if _, err := env.Client.Create(ctx, svc("pods", "default", "None")); err != nil {
		t.Fatal(err)
	}
	ep := &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Name: "pods", Namespace: "default"},
		Subsets: []*corev1.EndpointSubset{{Addresses: []*corev1.EndpointAddress{{Ip: "10.244.1.1"}},
			NotReadyAddresses: []*corev1.EndpointAddress{{Ip: "10.244.1.2"}}}}}
	created, err := env.Client.Create(ctx, ep)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "headless A", func() error {
		return expect(t, s, "udp", hname, dns.TypeA, dns.RcodeSuccess, hname+" A 10.244.1.1")
	})
	ep = created.(*corev1.Endpoints)
	ep.Subsets[0].Addresses = append(ep.Subsets[0].Addresses, ep.Subsets[0].NotReadyAddresses...)
	ep.Subsets[0].NotReadyAddresses = nil
	if _, err := env.Client.Update(ctx, ep); err != nil {
		t.Fatal(err)
	}
	eventually(t, "endpoint became ready", func() error {
		return expect(t, s, "udp", hname, dns.TypeA, dns.RcodeSuccess, hname+" A 10.244.1.1", hname+" A 10.244.1.2")
	})
	if _, err := env.Client.Delete(ctx, kind(t, "services"), "default", "api", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted service is NXDOMAIN", func() error { return expect(t, s, "udp", name, dns.TypeA, dns.RcodeNameError) })
}

// The server creates kube-system/kube-dns at the configured address and keeps itself in its
// Endpoints; stopping takes it out.
func TestRegistration(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	endpoint := netip.MustParseAddrPort("192.0.2.53:1053")
	s := startServer(t, env, Config{Register: &RegistrationConfig{Client: env.Client,
		ClusterIP: netip.MustParseAddr("10.96.0.10"), Endpoint: endpoint, Identity: "dns-a"}})
	eventually(t, "kube-dns resolves to its cluster IP", func() error {
		return expect(t, s, "udp", "kube-dns.kube-system.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess,
			"kube-dns.kube-system.svc.cluster.local. A 10.96.0.10")
	})
	eventually(t, "endpoints list this server", func() error {
		obj, err := env.Client.Get(ctx, kind(t, "endpoints"), "kube-system", "kube-dns")
		if err != nil {
			return err
		}
		ss := obj.(*corev1.Endpoints).GetSubsets()
		var got []string
		for _, s := range ss {
			for _, a := range s.Addresses {
				for _, p := range s.Ports {
					got = append(got, p.Name+" "+a.Ip+":"+fmtUint(uint16(p.Port))+"/"+p.Protocol)
				}
			}
		}
		return cmpStrings(got, "dns 192.0.2.53:1053/UDP", "dns-tcp 192.0.2.53:1053/TCP")
	})
	// A second server joins the Endpoints; the first one's stop takes it out.
	reg2, err := NewRegistration(RegistrationConfig{Client: env.Client, ClusterIP: netip.MustParseAddr("10.96.0.10"),
		Endpoint: netip.MustParseAddrPort("192.0.2.54:1053"), Identity: "dns-b", Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = reg2.Run(rctx) }()
	ips := func() []string {
		obj, err := env.Client.Get(ctx, kind(t, "endpoints"), "kube-system", "kube-dns")
		if err != nil {
			return nil
		}
		var out []string
		for _, s := range obj.(*corev1.Endpoints).GetSubsets() {
			for _, a := range s.Addresses {
				out = append(out, a.Ip)
			}
		}
		return out
	}
	eventually(t, "second server joins", func() error { return cmpStrings(ips(), "192.0.2.53", "192.0.2.54") })
	stop()
	<-done
	if err := cmpStrings(ips(), "192.0.2.53"); err != nil {
		t.Errorf("after the second server stopped: %v", err)
	}
	if _, err := NewRegistration(RegistrationConfig{Client: env.Client, Endpoint: netip.MustParseAddrPort("127.0.0.1:53")}); err == nil {
		t.Error("a loopback endpoint was accepted: pods cannot reach it")
	}
}

func cmpStrings(got []string, want ...string) error {
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return mismatch{got, want}
	}
	return nil
}
