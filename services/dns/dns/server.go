// Package dns is the cluster DNS: it answers for Services under the cluster domain as
// Kubernetes' DNS specification says, from the informers' caches (no etcd, no apiserver
// round trip per query):
//
//   - SERVICE.NS.svc.DOMAIN A: the Service's cluster IP; for a headless Service, the ready
//     addresses of its Endpoints;
//   - HOSTNAME.SERVICE.NS.svc.DOMAIN A: an endpoint address that has a hostname (headless);
//   - _PORT._PROTO.SERVICE.NS.svc.DOMAIN SRV: each named port, pointing at the Service's
//     name (or, headless, at each endpoint), with the A records as additional answers;
//   - ExternalName Services: a CNAME to their external name;
//   - a name under the domain that does not exist: NXDOMAIN, with the zone's SOA; a name
//     that exists without records of the asked type: no answer (NOERROR).
//
// Names outside the cluster domain are refused (no upstream forwarding).
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
)

// DefaultDomain is Kubernetes' default cluster domain.
const DefaultDomain = "cluster.local"

// ttl is the records' TTL in seconds (Kubernetes' CoreDNS plugin answers with 5).
const ttl = 5

// Config configures a Server.
type Config struct {
	Informers *informer.Factory
	// Domain is the cluster domain (DefaultDomain when empty).
	Domain string
	// Addr is where to listen, UDP and TCP ("127.0.0.1:0" picks a port).
	Addr   string
	Logger *slog.Logger
	// Metrics registers the server's metrics (nil: none).
	Metrics prometheus.Registerer
	// OnServing is called once the caches are synced and the server answers.
	OnServing func(addr netip.AddrPort)
	// Register, if set, keeps this server in kube-system/kube-dns's Endpoints while it
	// serves (an Endpoint port of 0 is the port the server listens on).
	Register *RegistrationConfig
}

// Server answers DNS queries about the cluster's Services.
type Server struct {
	cfg       Config
	log       *slog.Logger
	zone      string // "cluster.local."
	services  *informer.Informer
	endpoints *informer.Informer
	queries   *prometheus.CounterVec

	mu   sync.Mutex
	addr netip.AddrPort
	pc   net.PacketConn
	lis  net.Listener
}

// New prepares a server; Run serves.
func New(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if _, ok := dns.IsDomainName(cfg.Domain); !ok {
		return nil, fmt.Errorf("cluster domain %q is not a domain name", cfg.Domain)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	svcKind, err := scheme.Default().ForMessage(&corev1.Service{})
	if err != nil {
		return nil, err
	}
	epKind, err := scheme.Default().ForMessage(&corev1.Endpoints{})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, zone: dns.Fqdn(strings.ToLower(cfg.Domain)),
		services: cfg.Informers.For(svcKind), endpoints: cfg.Informers.For(epKind),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_dns_queries_total",
			Help: "DNS queries answered, by response code."}, []string{"rcode"})}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(s.queries); err != nil {
			return nil, fmt.Errorf("register DNS metrics: %w", err)
		}
	}
	return s, nil
}

// Addr is the address the server answers on (valid once serving).
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Listen opens the server's UDP and TCP sockets (Run does when they are not open yet): a
// caller can open them in another network namespace.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc != nil {
		return nil
	}
	// With port 0 the kernel picks a free UDP port, which TCP may have in use: pick again.
	_, port, _ := net.SplitHostPort(s.cfg.Addr)
	attempts := 1
	if port == "0" {
		attempts = 20
	}
	var pc net.PacketConn
	var lis net.Listener
	for i := range attempts {
		var err error
		pc, err = net.ListenPacket("udp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("listen DNS on udp %s: %w", s.cfg.Addr, err)
		}
		// TCP on the same port as UDP, as resolvers expect.
		lis, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == attempts-1 || !errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("listen DNS on tcp %s: %w", pc.LocalAddr(), err)
		}
	}
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s.pc, s.lis, s.addr = pc, lis, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	return nil
}

// Run waits for the caches, then answers on UDP and TCP until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	pc, lis := s.pc, s.lis
	s.mu.Unlock()
	s.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, s.services, s.endpoints) {
		pc.Close()
		lis.Close()
		return nil
	}

	handler := dns.HandlerFunc(s.serve)
	servers := []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: lis, Handler: handler}}
	errc := make(chan error, len(servers))
	started := make(chan struct{}, len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { errc <- srv.ActivateAndServe() }()
	}
	for range servers {
		select {
		case <-started:
		case err := <-errc:
			for _, srv := range servers {
				_ = srv.Shutdown()
			}
			return fmt.Errorf("DNS server: %w", err)
		}
	}
	s.log.Info("DNS serving", "addr", s.Addr().String(), "domain", s.cfg.Domain)
	var registered chan struct{}
	if rc := s.cfg.Register; rc != nil {
		rcfg := *rc
		if rcfg.Endpoint.Port() == 0 {
			rcfg.Endpoint = netip.AddrPortFrom(rcfg.Endpoint.Addr(), s.Addr().Port())
		}
		if rcfg.Logger == nil {
			rcfg.Logger = s.log
		}
		reg, err := NewRegistration(rcfg)
		if err != nil {
			for _, srv := range servers {
				_ = srv.Shutdown()
			}
			return err
		}
		registered = make(chan struct{})
		go func() { defer close(registered); _ = reg.Run(ctx) }()
	}
	if s.cfg.OnServing != nil {
		s.cfg.OnServing(s.Addr())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	if registered != nil {
		<-registered // it leaves the Endpoints once ctx ends
	}
	for _, srv := range servers {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.ShutdownContext(sctx)
		cancel()
	}
	return runErr
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := s.Answer(req)
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		resp.Truncate(size)
	}
	s.queries.WithLabelValues(dns.RcodeToString[resp.Rcode]).Inc()
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("DNS reply not sent", "error", err)
	}
}

// Answer builds the response to a query.
func (s *Server) Answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeNotImplemented)
		return resp
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if q.Qclass != dns.ClassINET || !dns.IsSubDomain(s.zone, name) {
		resp.Authoritative = false
		resp.SetRcode(req, dns.RcodeRefused)
		return resp
	}
	answer, extra, exists := s.lookup(name, q.Qtype)
	switch {
	case !exists:
		resp.SetRcode(req, dns.RcodeNameError)
		resp.Ns = []dns.RR{s.soa()}
	case len(answer) == 0:
		resp.Ns = []dns.RR{s.soa()}
	default:
		resp.Answer, resp.Extra = answer, extra
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(max(opt.UDPSize(), dns.MinMsgSize), false)
	}
	return resp
}

func (s *Server) soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns.dns." + s.zone, Mbox: "hostmaster." + s.zone, Serial: uint32(time.Now().Unix()),
		Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl}
}

// lookup returns the records of name (lower case, fully qualified, under the zone) of type
// qtype and whether the name exists at all.
func (s *Server) lookup(name string, qtype uint16) (answer, extra []dns.RR, exists bool) {
	rel := strings.TrimSuffix(strings.TrimSuffix(name, s.zone), ".")
	if rel == "" {
		// The zone apex.
		if qtype == dns.TypeSOA {
			return []dns.RR{s.soa()}, nil, true
		}
		return nil, nil, true
	}
	labels := dns.SplitDomainName(rel)
	n := len(labels)
	if labels[n-1] != "svc" {
		return nil, nil, false
	}
	switch n {
	case 1: // svc.DOMAIN: exists as a parent of every service name
		return nil, nil, true
	case 2: // NS.svc.DOMAIN
		return nil, nil, s.namespaceHasServices(labels[0])
	case 3: // SERVICE.NS.svc.DOMAIN
		return s.serviceRecords(name, labels[1], labels[0], qtype)
	case 4: // HOSTNAME.SERVICE.NS.svc.DOMAIN (an endpoint of a headless service)
		return s.hostnameRecords(name, labels[2], labels[1], labels[0], qtype)
	case 5: // _PORT._PROTO.SERVICE.NS.svc.DOMAIN
		return s.srvRecords(name, labels[3], labels[2], labels[0], labels[1], qtype)
	}
	return nil, nil, false
}

func (s *Server) namespaceHasServices(ns string) bool {
	objs, err := s.services.Store().ByIndex(informer.NamespaceIndex, ns)
	return err == nil && len(objs) > 0
}

func (s *Server) service(ns, name string) (*corev1.Service, *corev1.Endpoints) {
	obj, ok := s.services.Store().Get(ns, name)
	if !ok {
		return nil, nil
	}
	var ep *corev1.Endpoints
	if e, ok := s.endpoints.Store().Get(ns, name); ok {
		ep = e.(*corev1.Endpoints)
	}
	return obj.(*corev1.Service), ep
}

func isHeadless(svc *corev1.Service) bool { return svc.GetSpec().GetClusterIp() == "None" }

// readyAddresses are a headless service's ready endpoint addresses (sorted, unique).
func readyAddresses(ep *corev1.Endpoints) []*corev1.EndpointAddress {
	var out []*corev1.EndpointAddress
	seen := map[string]bool{}
	for _, ss := range ep.GetSubsets() {
		for _, a := range ss.GetAddresses() {
			if !seen[a.GetIp()] {
				seen[a.GetIp()] = true
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, func(a, b *corev1.EndpointAddress) int { return strings.Compare(a.GetIp(), b.GetIp()) })
	return out
}

func aRecord(name, ip string) dns.RR {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttl}
	if addr.Is4() {
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: addr.AsSlice()}
	}
	hdr.Rrtype = dns.TypeAAAA
	return &dns.AAAA{Hdr: hdr, AAAA: addr.AsSlice()}
}

// addressRecords are the A (or AAAA) records of ips that match qtype.
func addressRecords(name string, ips []string, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, ip := range ips {
		rr := aRecord(name, ip)
		if rr != nil && (qtype == dns.TypeANY || rr.Header().Rrtype == qtype) {
			out = append(out, rr)
		}
	}
	return out
}

func (s *Server) serviceRecords(name, ns, svcName string, qtype uint16) (answer, extra []dns.RR, exists bool) {
	svc, ep := s.service(ns, svcName)
	if svc == nil {
		return nil, nil, false
	}
	if svc.GetSpec().GetType() == "ExternalName" {
		target := dns.Fqdn(svc.GetSpec().GetExternalName())
		return []dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl},
			Target: target}}, nil, true
	}
	if isHeadless(svc) {
		var ips []string
		for _, a := range readyAddresses(ep) {
			ips = append(ips, a.GetIp())
		}
		return addressRecords(name, ips, qtype), nil, true
	}
	if ip := svc.GetSpec().GetClusterIp(); ip != "" {
		return addressRecords(name, []string{ip}, qtype), nil, true
	}
	return nil, nil, true
}

func (s *Server) hostnameRecords(name, ns, svcName, host string, qtype uint16) (answer, extra []dns.RR, exists bool) {
	svc, ep := s.service(ns, svcName)
	if svc == nil || !isHeadless(svc) {
		return nil, nil, false
	}
	var ips []string
	for _, a := range readyAddresses(ep) {
		if a.GetHostname() == host || (a.GetHostname() == "" && dashed(a.GetIp()) == host) {
			ips = append(ips, a.GetIp())
		}
	}
	if len(ips) == 0 {
		return nil, nil, false
	}
	return addressRecords(name, ips, qtype), nil, true
}

// srvRecords answers _PORT._PROTO.SERVICE.NS.svc.DOMAIN for a named port.
func (s *Server) srvRecords(name, ns, svcName, portLabel, protoLabel string, qtype uint16) (answer, extra []dns.RR, exists bool) {
	if !strings.HasPrefix(portLabel, "_") || !strings.HasPrefix(protoLabel, "_") {
		return nil, nil, false
	}
	portName, proto := portLabel[1:], strings.ToUpper(protoLabel[1:])
	svc, ep := s.service(ns, svcName)
	if svc == nil {
		return nil, nil, false
	}
	var port *corev1.ServicePort
	for _, p := range svc.GetSpec().GetPorts() {
		if p.GetName() == portName && p.GetName() != "" && p.GetProtocol() == proto {
			port = p
		}
	}
	if port == nil {
		return nil, nil, false
	}
	if qtype != dns.TypeSRV && qtype != dns.TypeANY {
		return nil, nil, true
	}
	svcFQDN := strings.Join([]string{svcName, ns, "svc", s.zone}, ".")
	srv := func(target string, p int32) dns.RR {
		return &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
			Priority: 0, Weight: 100, Port: uint16(p), Target: target}
	}
	if !isHeadless(svc) {
		answer = append(answer, srv(svcFQDN, port.GetPort()))
		extra = addressRecords(svcFQDN, []string{svc.GetSpec().GetClusterIp()}, dns.TypeANY)
		return answer, extra, true
	}
	// Headless: one record per ready endpoint, at the endpoint's port of that name.
	for _, ss := range ep.GetSubsets() {
		var epPort int32
		for _, p := range ss.GetPorts() {
			if p.GetName() == portName && p.GetProtocol() == proto {
				epPort = p.GetPort()
			}
		}
		if epPort == 0 {
			continue
		}
		for _, a := range ss.GetAddresses() {
			host := a.GetHostname()
			if host == "" {
				host = dashed(a.GetIp())
			}
			target := host + "." + svcFQDN
			answer = append(answer, srv(target, epPort))
			extra = append(extra, addressRecords(target, []string{a.GetIp()}, dns.TypeANY)...)
		}
	}
	return answer, extra, true
}

// dashed is the name of an endpoint without a hostname: its address with dashes
// (10.244.1.5 -> 10-244-1-5), as Kubernetes' DNS names it.
func dashed(ip string) string { return strings.NewReplacer(".", "-", ":", "-").Replace(ip) }

// DefaultDomainOr is domain, or DefaultDomain when it is empty.
func DefaultDomainOr(domain string) string {
	if domain == "" {
		return DefaultDomain
	}
	return domain
}
