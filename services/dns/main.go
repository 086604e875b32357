// Command dns is the cluster DNS (package dns): it answers for Services under the cluster
// domain and registers itself as the endpoint of kube-system/kube-dns. Flags only.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/pkg/serviceip"
	"github.com/skiff-project/skiff/services/dns/dns"
)

func main() {
	var listen, domain, clusterIP, advertise string
	var register bool
	defaultIP, _ := serviceip.ParseRange(serviceip.DefaultRange)
	component.Main("dns", "127.0.0.1:10054", func(fs *flag.FlagSet) {
		fs.StringVar(&listen, "listen", "0.0.0.0:53", "UDP and TCP address to answer on")
		fs.StringVar(&domain, "cluster-domain", dns.DefaultDomain, "the cluster domain")
		fs.StringVar(&clusterIP, "cluster-ip", defaultIP.DNSIP().String(),
			"cluster IP of the kube-system/kube-dns Service (the nameserver in pods' resolv.conf)")
		fs.StringVar(&advertise, "advertise-address", "", "address the node's pods reach this server at, "+
			"written in kube-dns's Endpoints (default: the address of the default route)")
		fs.BoolVar(&register, "register", true, "create kube-system/kube-dns and keep this server in its Endpoints")
	}, func(ctx context.Context, env *component.Env) error {
		cfg := dns.Config{Informers: env.Informers, Domain: domain, Addr: listen, Logger: env.Log, Metrics: env.Metrics,
			OnServing: func(netip.AddrPort) { env.SetReady(true) }}
		if register {
			ip, err := netip.ParseAddr(clusterIP)
			if err != nil {
				return fmt.Errorf("--cluster-ip: %w", err)
			}
			adv, err := dns.DefaultAdvertiseAddr()
			if advertise != "" {
				adv, err = netip.ParseAddr(advertise)
			}
			if err != nil {
				return fmt.Errorf("--advertise-address: %w", err)
			}
			cfg.Register = &dns.RegistrationConfig{Client: env.Client, ClusterIP: ip,
				Endpoint: netip.AddrPortFrom(adv, 0), Identity: env.Identity}
		}
		srv, err := dns.New(cfg)
		if err != nil {
			return err
		}
		return srv.Run(ctx)
	})
}
