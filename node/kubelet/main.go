// Command kubelet is Skiff's node agent (bin/kubelet). Flags only; the kubelet is package
// node/kubelet/kubelet, the runtime packages under node/kubelet/runtime, the shared component
// shape internal/component.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/node/kubelet/kubelet"
	ctrd "github.com/skiff-project/skiff/node/kubelet/runtime/containerd"
	"github.com/skiff-project/skiff/node/kubelet/runtime/hollow"
)

func main() {
	var (
		cfg                         kubelet.Config
		runtimeName, endpoint       string
		containerdDir, clusterDNS   string
		address, nodeLabels         string
		port                        int
		cgroupParent, cniPluginDirs string
		preload                     string
		leaseSeconds                int
	)
	host, _ := os.Hostname()
	component.Main("kubelet", "127.0.0.1:10248", func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.NodeName, "hostname-override", host, "the Node's name")
		fs.StringVar(&cfg.NodeIP, "node-ip", "", "the node's InternalIP (default: the host's first non-loopback IPv4)")
		fs.StringVar(&cfg.PodCIDR, "pod-cidr", "", "the node's pod range (default: wait for the control plane to set spec.podCIDR)")
		fs.StringVar(&cfg.RootDir, "root-dir", "/var/lib/skiff/kubelet", "pods' volumes and container logs")
		fs.StringVar(&clusterDNS, "cluster-dns", "", "comma-separated cluster DNS server IPs (the kube-dns Service's ClusterIP)")
		fs.StringVar(&cfg.ClusterDomain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
		fs.StringVar(&address, "address", "0.0.0.0", "the kubelet API's listen address")
		fs.IntVar(&port, "port", 10250, "the kubelet API's port (logs, exec, image loads; 0: any free port)")
		fs.IntVar(&cfg.MaxPods, "max-pods", 110, "the pods the node takes")
		fs.StringVar(&nodeLabels, "node-labels", "", "extra node labels, key=value comma-separated")
		fs.StringVar(&runtimeName, "container-runtime", "containerd", "containerd, or hollow (pretends; for scale tests)")
		fs.StringVar(&endpoint, "container-runtime-endpoint", "", "containerd's socket (default: the one --containerd-dir starts)")
		fs.StringVar(&containerdDir, "containerd-dir", "/var/lib/skiff/containerd", "start a containerd of the kubelet's own with its root, state and socket here (unless --container-runtime-endpoint is given)")
		fs.StringVar(&cgroupParent, "cgroup-parent", "/skiff", "the cgroup containers go under")
		fs.StringVar(&cniPluginDirs, "cni-bin-dir", "/usr/lib/cni,/opt/cni/bin", "where the CNI plugins are")
		fs.IntVar(&cfg.Workers, "pod-workers", 0, "pods synced at once (0: twice the CPUs, at least 4)")
		fs.StringVar(&preload, "preload-images", "", "image tarballs imported before the node registers: comma-separated files or glob patterns (bin/images/*.tar)")
		fs.IntVar(&leaseSeconds, "node-lease-duration-seconds", 40, "the node Lease's duration; the kubelet renews it every quarter of that, as Kubernetes' does")
		fs.DurationVar(&cfg.NodeStatusInterval, "node-status-update-frequency", 10*time.Second, "how often node status is computed and written when it changed")
	}, func(ctx context.Context, env *component.Env) error {
		cfg.ServerAddr = fmt.Sprintf("%s:%d", address, port)
		if leaseSeconds <= 0 {
			return fmt.Errorf("--node-lease-duration-seconds %d: want a positive number", leaseSeconds)
		}
		cfg.LeaseDuration = time.Duration(leaseSeconds) * time.Second
		cfg.HeartbeatInterval = cfg.LeaseDuration / 4
		files, err := kubelet.ExpandPreload(preload)
		if err != nil {
			return err
		}
		cfg.PreloadImages = files
		if clusterDNS != "" {
			cfg.ClusterDNS = strings.Split(clusterDNS, ",")
		}
		if nodeLabels != "" {
			cfg.Labels = map[string]string{}
			for _, kv := range strings.Split(nodeLabels, ",") {
				k, v, _ := strings.Cut(kv, "=")
				cfg.Labels[k] = v
			}
		}
		cfg.Client, cfg.Informers, cfg.Recorder, cfg.Logger, cfg.Metrics = env.Client, env.Informers, env.Recorder, env.Log, env.Metrics
		cfg.OnSynced = func() { env.SetReady(true) }
		switch runtimeName {
		case "hollow":
			cfg.Runtime = hollow.New()
		case "containerd":
			if missing := ctrd.Requirements(); len(missing) > 0 {
				return fmt.Errorf("this host cannot run containers; missing: %s", strings.Join(missing, "; "))
			}
			if endpoint == "" {
				d, err := ctrd.StartDaemon(ctx, ctrd.DaemonConfig{Dir: containerdDir, Logger: env.Log})
				if err != nil {
					return err
				}
				defer d.Stop()
				endpoint = d.Address
			}
			rt, err := ctrd.New(ctx, ctrd.Config{Address: endpoint, StateDir: filepath.Join(cfg.RootDir, "runtime"),
				ImageFsPath: containerdDir, CgroupParent: cgroupParent, Logger: env.Log,
				CNI: cniConfig(cfg.NodeName, cfg.RootDir, cniPluginDirs)})
			if err != nil {
				return err
			}
			defer rt.Close()
			cfg.Runtime = rt
		default:
			return fmt.Errorf("--container-runtime %q: want containerd or hollow", runtimeName)
		}
		k, err := kubelet.New(cfg)
		if err != nil {
			return err
		}
		return k.Run(ctx)
	})
}
