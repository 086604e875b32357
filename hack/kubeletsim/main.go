// Command kubeletsim runs the simulated kubelet (internal/testenv/kubeletsim) against a running
// control plane, for demos and manual tests where no real node runs yet: it creates Node
// objects, heartbeats their Leases, reports the pods bound to them Running and Ready with a pod
// IP, and confirms their deletion.
//
//	go run ./hack/kubeletsim --server 127.0.0.1:9090 --nats-url nats://127.0.0.1:4222 --nodes 3
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/internal/testenv/kubeletsim"
)

func main() {
	var (
		nodes     int
		prefix    string
		heartbeat time.Duration
	)
	component.Main("kubeletsim", "127.0.0.1:10270", func(fs *flag.FlagSet) {
		fs.IntVar(&nodes, "nodes", 3, "number of simulated nodes")
		fs.StringVar(&prefix, "node-prefix", "sim-", "node names are this prefix and a number")
		fs.DurationVar(&heartbeat, "heartbeat", 10*time.Second, "Lease renewal interval")
	}, func(ctx context.Context, env *component.Env) error {
		names := make([]string, nodes)
		for i := range names {
			names[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		if err := kubeletsim.CreateNodes(ctx, env.Client, names, kubeletsim.NodeOptions{}); err != nil {
			return err
		}
		k := kubeletsim.New(kubeletsim.Config{Client: env.Client, JetStream: env.JetStream, Nodes: names,
			HeartbeatInterval: heartbeat, Logger: env.Log})
		go func() {
			if k.WaitForSync(ctx) {
				env.SetReady(true)
				env.Log.Info("simulated nodes running", "nodes", names)
			}
		}()
		return k.Run(ctx)
	})
}
