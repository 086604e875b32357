// Package namespace is the namespace lifecycle controller: it empties namespaces being
// deleted. The apiserver marks a deleted namespace Terminating, refuses new objects in it and
// removes it in the transaction that finds it empty (services/apiserver/registry/namespace.go);
// this controller deletes what it holds, object by object, through the API, so that each
// object goes as its own deletion says (finalizers, a pod's grace period and its node's
// confirmation), as Kubernetes' namespace controller does. Once nothing is left it deletes the
// namespace again, which completes the removal if the delete of the last object did not.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// Name is the controller's name in logs, metrics and --controllers.
const Name = "namespace"

// Re-checks of a namespace whose content is still going: soon at first, then less often.
const (
	minRecheck = 500 * time.Millisecond
	maxRecheck = 15 * time.Second
)

// Config configures the controller.
type Config struct {
	Client    client.Interface
	Informers *informer.Factory
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	// Workers empty different namespaces in parallel (Kubernetes' default 10).
	Workers int
}

// Controller is the namespace lifecycle controller.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	nsKind  *scheme.Kind
	nsInf   *informer.Informer
	queue   *workqueue.Queue[string]
	metrics *controller.Metrics

	mu      sync.Mutex
	recheck map[string]time.Duration // per namespace, the next re-check delay
}

// New builds the controller; call Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("namespace: Config needs Client and Informers")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 10
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Controller{cfg: cfg, log: log.With("controller", Name), queue: workqueue.New[string](workqueue.WithName(Name)),
		metrics: controller.NewMetrics(cfg.Metrics), recheck: map[string]time.Duration{}}
	c.nsKind, _ = cfg.Client.Scheme().ForName("namespaces")
	c.nsInf = cfg.Informers.For(c.nsKind)
	enqueue := func(obj scheme.Object) {
		if obj.GetMetadata().GetDeletionTimestamp() != "" {
			c.queue.Add(obj.GetMetadata().GetName())
		}
	}
	c.nsInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj scheme.Object) { enqueue(obj) },
		DeleteFunc: func(obj scheme.Object) { c.forget(obj.GetMetadata().GetName()) },
	})
	return c, nil
}

// Run empties terminating namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, c.nsInf) {
		return ctx.Err()
	}
	c.log.Info("controller started", "namespaces", c.nsInf.Store().Len())
	workqueue.Run(ctx, c.queue, c.cfg.Workers, func(ctx context.Context, name string) error {
		start := time.Now()
		err := c.sync(ctx, name)
		c.metrics.Observe(Name, start, err)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("emptying namespace failed; will retry", "namespace", name, "error", err)
		}
		return err
	})
	return nil
}

func (c *Controller) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.recheck, name)
}

// nextRecheck doubles the namespace's re-check delay, within bounds.
func (c *Controller) nextRecheck(name string) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.recheck[name]
	if d == 0 {
		d = minRecheck
	}
	c.recheck[name] = min(2*d, maxRecheck)
	return d
}

func (c *Controller) sync(ctx context.Context, name string) error {
	obj, ok := c.nsInf.Store().GetByKey(name)
	if !ok {
		return nil
	}
	ns := obj.(*corev1.Namespace)
	if ns.GetMetadata().GetDeletionTimestamp() == "" {
		return nil
	}
	remaining, err := c.deleteContent(ctx, name)
	if err != nil {
		return err
	}
	if len(remaining) > 0 {
		// Objects waiting for their finalizers or grace period: look again later (their going
		// also removes the namespace, in the apiserver, when it is the last).
		c.log.Debug("namespace content remaining", "namespace", name, "remaining", remaining)
		c.queue.AddAfter(name, c.nextRecheck(name))
		return nil
	}
	// Empty: a repeated delete completes the removal if nothing else did.
	_, err = c.cfg.Client.Delete(ctx, c.nsKind, "", name, client.DeleteOptions{UID: ns.GetMetadata().GetUid()})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// deleteContent deletes every object of every namespaced kind in namespace ns that is not
// already being deleted, and returns how many objects of each kind are still there.
func (c *Controller) deleteContent(ctx context.Context, ns string) (map[string]int, error) {
	remaining := map[string]int{}
	var errs []error
	for _, k := range c.cfg.Client.Scheme().Kinds() {
		if !k.Namespaced {
			continue
		}
		list, err := client.ListAll(ctx, c.cfg.Client, k, ns, client.ListOptions{Limit: 500})
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", k.Resource, err))
			continue
		}
		for _, obj := range list.Items {
			md := obj.GetMetadata()
			remaining[k.Resource]++
			if md.GetDeletionTimestamp() != "" {
				continue
			}
			res, err := c.cfg.Client.Delete(ctx, k, ns, md.GetName(), client.DeleteOptions{UID: md.GetUid(), PropagationPolicy: "Background"})
			switch {
			case err == nil:
				// Gone at once unless finalizers or a grace period hold it.
				if rmd := res.GetMetadata(); len(rmd.GetFinalizers()) == 0 && rmd.GetDeletionGracePeriodSeconds() == 0 {
					remaining[k.Resource]--
				}
			case apierrors.IsNotFound(err), apierrors.IsConflict(err):
				remaining[k.Resource]-- // gone, or replaced: the next pass sees
			default:
				errs = append(errs, fmt.Errorf("delete %s %s: %w", k.Kind, md.GetName(), err))
			}
		}
		if remaining[k.Resource] == 0 {
			delete(remaining, k.Resource)
		}
	}
	return remaining, errors.Join(errs...)
}
