// Command scheduler binds pending pods to nodes. Flags only; the scheduler is package
// scheduler, the shared component shape is internal/component.
package main

import (
	"context"
	"flag"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/services/scheduler/scheduler"
)

func main() {
	var cfg scheduler.Config
	component.Main("scheduler", "127.0.0.1:10259", func(fs *flag.FlagSet) {
		fs.StringVar(&cfg.SchedulerName, "scheduler-name", scheduler.DefaultSchedulerName, "schedule pods whose spec.schedulerName is this (or empty)")
		fs.IntVar(&cfg.PercentageOfNodesToScore, "percentage-of-nodes-to-score", 0,
			"stop looking for feasible nodes at this share of the cluster (0: Kubernetes' adaptive default)")
		fs.IntVar(&cfg.BindWorkers, "bind-workers", 32, "bindings and status writes in flight")
	}, func(ctx context.Context, env *component.Env) error {
		cfg.Client, cfg.Informers, cfg.Recorder, cfg.Logger, cfg.Metrics = env.Client, env.Informers, env.Recorder, env.Log, env.Metrics
		cfg.OnSynced = func() { env.SetReady(true) }
		s, err := scheduler.New(cfg)
		if err != nil {
			return err
		}
		return s.Run(ctx)
	})
}
