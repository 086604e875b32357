// Command rs-controller runs Skiff's workload and lifecycle controllers: replicaset,
// deployment, garbagecollector, namespace and nodelifecycle (--controllers selects them).
// Flags only; the controllers are in the packages beside this file, the shared component
// shape is internal/component.
package main

import (
	"context"
	"flag"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/services/rs-controller/manager"
)

func main() {
	o := manager.DefaultOptions()
	component.Main("rs-controller", "127.0.0.1:10257", func(fs *flag.FlagSet) {
		o.RegisterFlags(fs)
	}, func(ctx context.Context, env *component.Env) error {
		return manager.Run(ctx, env, o)
	})
}
