// Command endpoints runs the Endpoints controller. Flags only; the controller is package
// endpoints, the shared component shape is internal/component.
package main

import (
	"context"
	"flag"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/services/endpoints/endpoints"
)

func main() {
	var cfg endpoints.Config
	component.Main("endpoints", "127.0.0.1:10263", func(fs *flag.FlagSet) {
		fs.IntVar(&cfg.Workers, "concurrent-endpoint-syncs", 5, "services reconciled in parallel")
	}, func(ctx context.Context, env *component.Env) error {
		cfg.Client, cfg.Informers, cfg.Logger, cfg.Metrics = env.Client, env.Informers, env.Log, env.Metrics
		cfg.OnSynced = func() { env.SetReady(true) }
		c, err := endpoints.New(cfg)
		if err != nil {
			return err
		}
		return c.Run(ctx)
	})
}
