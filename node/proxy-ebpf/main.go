//go:build linux

// Command proxy-ebpf balances connections to Services' cluster IPs on its node, in the
// kernel (see package proxy). Flags only.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/internal/kernel"
	"github.com/skiff-project/skiff/node/proxy-ebpf/proxy"
	"github.com/skiff-project/skiff/pkg/serviceip"
)

func main() {
	host, _ := os.Hostname()
	var nodeName, cgroup, pinDir, serviceRange string
	var uninstall bool
	component.Main("proxy-ebpf", "127.0.0.1:10249", func(fs *flag.FlagSet) {
		fs.StringVar(&nodeName, "node-name", host, "this node's name (names the pin directory)")
		fs.StringVar(&cgroup, "cgroup", "", "cgroup2 directory whose processes' sockets are balanced "+
			"(default: the cgroup2 root; in a container node, pass the node's own cgroup)")
		fs.StringVar(&pinDir, "bpffs-dir", "", "bpffs directory for the pinned maps and links (default /sys/fs/bpf/skiff/NODE)")
		fs.StringVar(&serviceRange, "service-cluster-ip-range", serviceip.DefaultRange,
			"the apiservers' service range: its addresses that are no service are refused")
		fs.BoolVar(&uninstall, "uninstall", false, "detach the programs, remove the pinned maps and links, and exit")
	}, func(ctx context.Context, env *component.Env) error {
		cfg, err := datapathConfig(nodeName, cgroup, pinDir, serviceRange)
		if err != nil {
			return err
		}
		if uninstall {
			dp, err := proxy.OpenDatapath(cfg)
			if err != nil {
				return err
			}
			return dp.Uninstall()
		}
		p, err := proxy.New(proxy.Config{Datapath: cfg, Informers: env.Informers, Logger: env.Log, Metrics: env.Metrics,
			OnSynced: func() { env.SetReady(true) }})
		if err != nil {
			return err
		}
		return p.Run(ctx)
	})
}

func datapathConfig(node, cgroup, pinDir, serviceRange string) (proxy.DatapathConfig, error) {
	if err := kernel.CanLoadBPF(); err != nil {
		return proxy.DatapathConfig{}, err
	}
	if cgroup == "" {
		root, err := kernel.Cgroup2Root()
		if err != nil {
			return proxy.DatapathConfig{}, err
		}
		cgroup = root
	}
	if pinDir == "" {
		pinDir = filepath.Join(kernel.BPFFS, "skiff", node)
	}
	rng, err := netip.ParsePrefix(serviceRange)
	if err != nil {
		return proxy.DatapathConfig{}, fmt.Errorf("--service-cluster-ip-range: %w", err)
	}
	return proxy.DatapathConfig{PinDir: pinDir, CgroupPath: cgroup, ServiceRange: rng}, nil
}
