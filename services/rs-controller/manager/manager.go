// Package manager runs the controllers the rs-controller binary hosts — replicaset,
// deployment, garbagecollector, namespace and nodelifecycle — on one shared component Env
// (one informer per kind, one bus connection), as kube-controller-manager hosts many
// controllers. --controllers selects them. skiff up runs the same set in its own process.
package manager

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/pkg/record"
	"github.com/skiff-project/skiff/services/rs-controller/deployment"
	"github.com/skiff-project/skiff/services/rs-controller/garbagecollector"
	"github.com/skiff-project/skiff/services/rs-controller/namespace"
	"github.com/skiff-project/skiff/services/rs-controller/nodelifecycle"
	"github.com/skiff-project/skiff/services/rs-controller/replicaset"
)

// Names lists the controllers the manager can run, all on by default.
func Names() []string {
	return []string{replicaset.Name, deployment.Name, garbagecollector.Name, namespace.Name, nodelifecycle.Name}
}

// Options configure the controllers.
type Options struct {
	// Controllers selects controllers as kube-controller-manager's flag does: "*" is every
	// controller, "name" adds one, "-name" removes one (e.g. "*,-nodelifecycle").
	Controllers string
	// NodeMonitorGracePeriod: a node silent that long becomes Ready=Unknown.
	NodeMonitorGracePeriod time.Duration
	// NodeMonitorPeriod: how often nodes are checked.
	NodeMonitorPeriod time.Duration
	// Workers per controller (0: each controller's default).
	ReplicaSetWorkers, DeploymentWorkers, GCWorkers int
}

// DefaultOptions are Kubernetes' defaults.
func DefaultOptions() Options {
	return Options{Controllers: "*", NodeMonitorGracePeriod: nodelifecycle.DefaultGracePeriod,
		NodeMonitorPeriod: nodelifecycle.DefaultMonitorPeriod}
}

// RegisterFlags adds the manager's flags to fs.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.Controllers, "controllers", o.Controllers, fmt.Sprintf(
		"controllers to run: '*' for all, 'name' to add one, '-name' to remove one, comma-separated (all: %s)", strings.Join(Names(), ", ")))
	fs.DurationVar(&o.NodeMonitorGracePeriod, "node-monitor-grace-period", o.NodeMonitorGracePeriod,
		"how long a node may go without a heartbeat (Lease or Ready condition) before it is Ready=Unknown and tainted unreachable")
	fs.DurationVar(&o.NodeMonitorPeriod, "node-monitor-period", o.NodeMonitorPeriod, "how often the node lifecycle controller checks nodes")
	fs.IntVar(&o.ReplicaSetWorkers, "concurrent-replicaset-syncs", 5, "replica sets reconciled in parallel")
	fs.IntVar(&o.DeploymentWorkers, "concurrent-deployment-syncs", 5, "deployments reconciled in parallel")
	fs.IntVar(&o.GCWorkers, "concurrent-gc-syncs", 20, "objects the garbage collector processes in parallel")
}

// Selected resolves the --controllers value into controller names, in Names' order; an empty
// value is "*".
func (o *Options) Selected() ([]string, error) {
	spec := o.Controllers
	if strings.TrimSpace(spec) == "" {
		spec = "*"
	}
	// As kube-controller-manager: "-name" always wins, then "name" or "*".
	all, on, off := false, map[string]bool{}, map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		name, disable := strings.CutPrefix(part, "-")
		switch {
		case part == "":
			continue
		case part == "*":
			all = true
			continue
		case !slices.Contains(Names(), name):
			return nil, fmt.Errorf("--controllers: unknown controller %q (known: %s)", name, strings.Join(Names(), ", "))
		case disable:
			off[name] = true
		default:
			on[name] = true
		}
	}
	var out []string
	for _, n := range Names() {
		if !off[n] && (all || on[n]) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Run builds the selected controllers on env and runs them until ctx ends or one fails.
func Run(ctx context.Context, env *component.Env, o Options) error {
	names, err := o.Selected()
	if err != nil {
		return err
	}
	type runner struct {
		name string
		run  func(context.Context) error
	}
	var runners []runner
	var recorders []*record.Recorder
	recorder := func(component string) *record.Recorder {
		r := record.New(env.Client, component, "", env.Log)
		recorders = append(recorders, r)
		return r
	}
	for _, name := range names {
		var run func(context.Context) error
		switch name {
		case replicaset.Name:
			c, err := replicaset.New(replicaset.Config{Client: env.Client, Informers: env.Informers, Logger: env.Log, Metrics: env.Metrics,
				Recorder: recorder("replicaset-controller"), Workers: o.ReplicaSetWorkers})
			if err != nil {
				return err
			}
			run = c.Run
		case deployment.Name:
			c, err := deployment.New(deployment.Config{Client: env.Client, Informers: env.Informers, Logger: env.Log, Metrics: env.Metrics,
				Recorder: recorder("deployment-controller"), Workers: o.DeploymentWorkers})
			if err != nil {
				return err
			}
			run = c.Run
		case garbagecollector.Name:
			c, err := garbagecollector.New(garbagecollector.Config{Client: env.Client, Informers: env.Informers, Logger: env.Log,
				Metrics: env.Metrics, Identity: env.Identity, Workers: o.GCWorkers})
			if err != nil {
				return err
			}
			run = c.Run
		case namespace.Name:
			c, err := namespace.New(namespace.Config{Client: env.Client, Informers: env.Informers, Logger: env.Log, Metrics: env.Metrics})
			if err != nil {
				return err
			}
			run = c.Run
		case nodelifecycle.Name:
			c, err := nodelifecycle.New(nodelifecycle.Config{Client: env.Client, Informers: env.Informers, Logger: env.Log,
				Metrics: env.Metrics, Recorder: recorder("node-controller"), GracePeriod: o.NodeMonitorGracePeriod,
				MonitorPeriod: o.NodeMonitorPeriod})
			if err != nil {
				return err
			}
			run = c.Run
		}
		runners = append(runners, runner{name, run})
	}
	env.Log.Info("starting controllers", "controllers", names)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range recorders {
		wg.Go(func() { r.Run(ctx) })
	}
	errs := make(chan error, len(runners))
	for _, r := range runners {
		wg.Go(func() {
			if err := r.run(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", r.name, err)
				cancel()
			}
		})
	}
	env.Informers.Start(ctx)
	wg.Go(func() {
		if env.Informers.WaitForCacheSync(ctx) {
			env.SetReady(true)
		}
	})
	<-ctx.Done()
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}
