package up

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/grpclog"

	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/serviceip"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/rs-controller/manager"
)

// NewCommand is `skiff up`: flags wired to Run.
func NewCommand() *cobra.Command {
	o := Options{Stream: bus.DefaultStreamConfig(), Proxy: true, Controllers: manager.DefaultOptions()}
	notReady, unreachable := admission.DefaultTolerationSecondsDefault, admission.DefaultTolerationSecondsDefault
	var logLevel string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole Skiff cluster in this process (embedded etcd and NATS, a local node)",
		Long: "up runs embedded etcd, embedded NATS JetStream, the apiserver, the scheduler, the controllers\n" +
			"(replica sets, deployments, endpoints, garbage collection, namespaces, node lifecycle), the\n" +
			"service proxy and DNS and, where the host can run containers, a local node (a containerd of its\n" +
			"own and a kubelet) in one process, with their data under --data-dir, until interrupted (Ctrl-C or\n" +
			"SIGTERM). Stopping it stops and removes the node's containers as a machine shutdown would; the\n" +
			"next run on the same --data-dir starts the pods again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			o.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			// gRPC's logger is process-wide; this binary's log is structured, so it goes there
			// too (before anything uses gRPC).
			grpclog.SetLoggerV2(grpcLogger{o.Logger.With("component", "grpc")})
			o.Out = cmd.OutOrStdout()
			o.CLI = os.Args[0]
			o.DefaultNotReadyTolerationSeconds, o.DefaultUnreachableTolerationSeconds = &notReady, &unreachable
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", "./.skiff", "directory for etcd and JetStream data (kept across restarts)")
	f.StringVar(&o.HTTPAddr, "http-addr", "127.0.0.1:8080", "REST, health and metrics listen address")
	f.StringVar(&o.GRPCAddr, "grpc-addr", "127.0.0.1:9090", "gRPC listen address")
	f.StringVar(&o.EtcdAddr, "etcd-addr", "127.0.0.1:2379", "embedded etcd client address")
	f.StringVar(&o.NATSAddr, "nats-addr", "127.0.0.1:4222", "embedded NATS client address")
	f.StringVar(&o.ServiceClusterIPRange, "service-cluster-ip-range", serviceip.DefaultRange, "CIDR Services' cluster IPs are allocated from")
	f.BoolVar(&o.Proxy, "proxy", true, "run the eBPF service proxy for this machine (needs root, cgroup2 and BPF)")
	f.StringVar(&o.DNSAddr, "dns-addr", "0.0.0.0:10053", "where the cluster DNS listens (UDP and TCP; \"\" for none); pods reach it at kube-dns's cluster IP, port 53")
	f.StringVar(&o.ClusterDomain, "cluster-domain", "cluster.local", "the cluster DNS domain")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.DurationVar(&o.Stream.MaxAge, "stream-max-age", o.Stream.MaxAge, "drop bus events older than this (watchers further behind get 410 and relist)")
	f.BoolVar(&o.NATSSyncAlways, "nats-sync-always", false, "fsync every bus message (survives a machine crash without relying on etcd replay; slower)")
	f.Int64Var(&o.Stream.MaxBytes, "stream-max-bytes", o.Stream.MaxBytes, "bound the bus stream's size; oldest events go first")
	f.BoolVar(&o.LocalNode, "local-node", true, "run a node too: a containerd of its own under --data-dir and a kubelet (needs root, containerd, runc and the CNI plugins)")
	f.StringVar(&o.NodeName, "node-name", "", "the local node's name (default: the host name)")
	f.StringVar(&o.PodCIDR, "pod-cidr", "10.244.0.0/24", "the local node's pod address range")
	f.StringVar(&o.ClusterDNS, "cluster-dns", "", "nameserver IP(s) for ClusterFirst pods, comma-separated (default: the kube-dns Service's cluster IP, when the DNS and the proxy run here)")
	f.StringVar(&o.ImagesDir, "images", "bin/images", "directory of image tarballs (*.tar, what make images writes) the local node imports at start (\"\": none)")
	f.StringVar(&o.Controllers.Controllers, "controllers", o.Controllers.Controllers,
		"controllers to run in process: '*' for all, 'name' to add one, '-name' to remove one (replicaset, deployment, garbagecollector, namespace, nodelifecycle)")
	f.DurationVar(&o.Controllers.NodeMonitorGracePeriod, "node-monitor-grace-period", o.Controllers.NodeMonitorGracePeriod,
		"how long a node may go without a heartbeat before it is Ready=Unknown and tainted unreachable")
	f.Int64Var(&notReady, "default-not-ready-toleration-seconds", notReady,
		"tolerationSeconds of the node.kubernetes.io/not-ready:NoExecute toleration added to every pod that has none")
	f.Int64Var(&unreachable, "default-unreachable-toleration-seconds", unreachable,
		"tolerationSeconds of the node.kubernetes.io/unreachable:NoExecute toleration added to every pod that has none")
	return cmd
}
