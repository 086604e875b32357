// Package deployment is the Deployment controller: it owns ReplicaSets by pod-template hash
// and rolls a Deployment from one template to the next as Kubernetes' does — RollingUpdate
// within maxSurge and maxUnavailable (absolute or percent; surge rounds up, unavailability
// down), or Recreate (all old pods gone before new ones start) — honouring minReadySeconds,
// revisionHistoryLimit and paused, numbering rollouts in the deployment.kubernetes.io/revision
// annotation, scaling proportionally during a rollout, and reporting status with the Available
// and Progressing conditions (NewReplicaSetAvailable, ReplicaSetUpdated,
// ProgressDeadlineExceeded). Rollback is a client's business (skiff rollout undo copies an old
// ReplicaSet's template back), as in Kubernetes.
//
// It is level-triggered: each reconcile starts from the caches, and every write is made on the
// version it read (a stale cache only costs a conflict and a retry), so a restarted controller
// picks up any rollout where it stands.
package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/labels"
	"github.com/skiff-project/skiff/pkg/record"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// Name is the controller's name in logs, metrics, events and --controllers.
const Name = "deployment"

// Config configures the controller.
type Config struct {
	Client    client.Interface
	Informers *informer.Factory
	Recorder  *record.Recorder // nil: no Events
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	// Workers reconcile different Deployments in parallel (Kubernetes' default 5).
	Workers int
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Controller is the Deployment controller.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	dKind   *scheme.Kind
	rsKind  *scheme.Kind
	dInf    *informer.Informer
	rsInf   *informer.Informer
	podInf  *informer.Informer
	queue   *workqueue.Queue[string]
	metrics *controller.Metrics
}

// New builds the controller and registers its informer handlers; call Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("deployment: Config needs Client and Informers")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := cfg.Client.Scheme()
	c := &Controller{cfg: cfg, log: log.With("controller", Name), queue: workqueue.New[string](workqueue.WithName(Name)),
		metrics: controller.NewMetrics(cfg.Metrics)}
	c.dKind, _ = s.ForName("deployments")
	c.rsKind, _ = s.ForName("replicasets")
	podKind, _ := s.ForName("pods")
	c.dInf = cfg.Informers.For(c.dKind)
	c.rsInf = cfg.Informers.For(c.rsKind)
	c.podInf = cfg.Informers.For(podKind)
	enqueue := func(obj scheme.Object) { c.queue.Add(informer.KeyOf(obj)) }
	c.dInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj scheme.Object) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	c.rsInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { c.rsChanged(nil, obj.(*appsv1.ReplicaSet)) },
		UpdateFunc: func(old, obj scheme.Object) { c.rsChanged(old.(*appsv1.ReplicaSet), obj.(*appsv1.ReplicaSet)) },
		DeleteFunc: func(obj scheme.Object) { c.enqueueOwner(obj.GetMetadata()) },
	})
	// Recreate waits for every old pod to be gone; their deletion is its cue.
	c.podInf.AddEventHandler(informer.HandlerFuncs{DeleteFunc: c.podDeleted})
	return c, nil
}

// Run reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, c.dInf, c.rsInf, c.podInf) {
		return ctx.Err()
	}
	c.log.Info("controller started", "deployments", c.dInf.Store().Len(), "replicasets", c.rsInf.Store().Len())
	workqueue.Run(ctx, c.queue, c.cfg.Workers, func(ctx context.Context, key string) error {
		start := time.Now()
		err := c.sync(ctx, key)
		if apierrors.HasStatusCause(err, apierrors.CauseNamespaceTerminating) {
			err = nil // the namespace and everything in it are going away
		}
		c.metrics.Observe(Name, start, err)
		// Conflicts (a stale cache) and objects deleted meanwhile are routine: the retry, or
		// the event that comes with the change, sorts them out.
		if err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			c.log.Warn("reconcile failed; will retry", "deployment", key, "error", err)
		}
		return err
	})
	return nil
}

// ---- event handlers ----

// resolve returns the Deployment a controller reference names, if it is the one cached.
func (c *Controller) resolve(ns string, ref *metav1.OwnerReference) *appsv1.Deployment {
	if ref == nil || ref.GetKind() != c.dKind.Kind || ref.GetApiVersion() != c.dKind.APIVersion() {
		return nil
	}
	obj, ok := c.dInf.Store().Get(ns, ref.GetName())
	if !ok || obj.GetMetadata().GetUid() != ref.GetUid() {
		return nil
	}
	return obj.(*appsv1.Deployment)
}

func (c *Controller) enqueueOwner(md *metav1.ObjectMeta) {
	if d := c.resolve(md.GetNamespace(), controller.ControllerOf(md)); d != nil {
		c.queue.Add(informer.KeyOf(d))
	}
}

func (c *Controller) rsChanged(old, cur *appsv1.ReplicaSet) {
	md := cur.GetMetadata()
	curRef := controller.ControllerOf(md)
	if old != nil {
		if oldRef := controller.ControllerOf(old.GetMetadata()); oldRef != nil && !proto.Equal(oldRef, curRef) {
			c.enqueueOwner(old.GetMetadata())
		}
	}
	if curRef != nil {
		c.enqueueOwner(md)
		return
	}
	if old != nil && maps.Equal(old.GetMetadata().GetLabels(), md.GetLabels()) && controller.ControllerOf(old.GetMetadata()) == nil {
		return
	}
	// An orphan: whoever selects it may adopt it.
	objs, _ := c.dInf.Store().ByIndex(informer.NamespaceIndex, md.GetNamespace())
	for _, obj := range objs {
		d := obj.(*appsv1.Deployment)
		sel, err := labels.FromLabelSelector(d.GetSpec().GetSelector())
		if err == nil && !sel.Empty() && sel.Matches(md.GetLabels()) {
			c.queue.Add(informer.KeyOf(d))
		}
	}
}

func (c *Controller) podDeleted(obj scheme.Object) {
	md := obj.GetMetadata()
	ref := controller.ControllerOf(md)
	if ref == nil || ref.GetKind() != c.rsKind.Kind {
		return
	}
	rs, ok := c.rsInf.Store().Get(md.GetNamespace(), ref.GetName())
	if !ok || rs.GetMetadata().GetUid() != ref.GetUid() {
		return
	}
	if d := c.resolve(md.GetNamespace(), controller.ControllerOf(rs.GetMetadata())); d != nil &&
		d.GetSpec().GetStrategy().GetType() == Recreate {
		c.queue.Add(informer.KeyOf(d))
	}
}

// ---- reconcile ----

func (c *Controller) sync(ctx context.Context, key string) error {
	obj, ok := c.dInf.Store().GetByKey(key)
	if !ok {
		return nil
	}
	// A working copy: status and annotations change as the reconcile goes.
	d := proto.Clone(obj).(*appsv1.Deployment)
	if d.Status == nil {
		d.Status = &appsv1.DeploymentStatus{}
	}
	sel, err := labels.FromLabelSelector(d.GetSpec().GetSelector())
	if err != nil || sel.Empty() {
		c.event(d, record.Warning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.GetMetadata().GetGeneration() {
			d.Status.ObservedGeneration = d.GetMetadata().GetGeneration()
			return c.writeStatus(ctx, d)
		}
		return nil
	}
	rsList, err := c.claimReplicaSets(ctx, d, sel)
	if err != nil {
		return err
	}
	if d.GetMetadata().GetDeletionTimestamp() != "" {
		return c.syncStatusOnly(ctx, d, rsList)
	}
	if err := c.checkPausedConditions(ctx, d); err != nil {
		return err
	}
	if d.GetSpec().GetPaused() {
		return c.syncScale(ctx, d, rsList)
	}
	scaling, err := c.isScalingEvent(ctx, d, rsList)
	if err != nil {
		return err
	}
	if scaling {
		return c.syncScale(ctx, d, rsList)
	}
	switch d.GetSpec().GetStrategy().GetType() {
	case Recreate:
		return c.rolloutRecreate(ctx, d, rsList)
	default:
		return c.rolloutRolling(ctx, d, rsList)
	}
}

// claimReplicaSets adopts and releases ReplicaSets by the Deployment's selector and returns
// those it controls.
func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	objs, _ := c.rsInf.Store().ByIndex(informer.NamespaceIndex, d.GetMetadata().GetNamespace())
	refs := &controller.RefManager{Client: c.cfg.Client, OwnerKind: c.dKind, Owner: d, Selector: sel,
		CanAdopt: controller.RecheckOwner(c.cfg.Client, c.dKind, d)}
	claimed, err := refs.Claim(ctx, objs)
	out := make([]*appsv1.ReplicaSet, len(claimed))
	for i, o := range claimed {
		out[i] = o.(*appsv1.ReplicaSet)
	}
	return out, err
}

// podsByReplicaSet maps each ReplicaSet's uid to the pods it controls (Recreate's view).
func (c *Controller) podsByReplicaSet(d *appsv1.Deployment, rsList []*appsv1.ReplicaSet) map[string][]*corev1.Pod {
	out := make(map[string][]*corev1.Pod, len(rsList))
	for _, rs := range rsList {
		out[rs.GetMetadata().GetUid()] = nil
	}
	objs, _ := c.podInf.Store().ByIndex(informer.NamespaceIndex, d.GetMetadata().GetNamespace())
	for _, obj := range objs {
		ref := controller.ControllerOf(obj.GetMetadata())
		if ref == nil {
			continue
		}
		if pods, ok := out[ref.GetUid()]; ok {
			out[ref.GetUid()] = append(pods, obj.(*corev1.Pod))
		}
	}
	return out
}

// ---- writes ----

// writeStatus writes d's status; d keeps up with the stored resourceVersion.
func (c *Controller) writeStatus(ctx context.Context, d *appsv1.Deployment) error {
	res, err := c.cfg.Client.UpdateStatus(ctx, d)
	if err != nil {
		return fmt.Errorf("update deployment status: %w", err)
	}
	d.Metadata.ResourceVersion = res.GetMetadata().GetResourceVersion()
	return nil
}

// writeMeta writes d's metadata (the revision annotation); its working status is kept.
func (c *Controller) writeMeta(ctx context.Context, d *appsv1.Deployment) error {
	res, err := c.cfg.Client.Update(ctx, d)
	if err != nil {
		return fmt.Errorf("update deployment: %w", err)
	}
	d.Metadata = proto.Clone(res.GetMetadata()).(*metav1.ObjectMeta)
	return nil
}

// scaleReplicaSet sets a ReplicaSet's size (and the Deployment size annotations); it reports
// whether the size changed.
func (c *Controller) scaleReplicaSet(ctx context.Context, rs *appsv1.ReplicaSet, size int32, d *appsv1.Deployment) (bool, *appsv1.ReplicaSet, error) {
	sizeChanged := rsReplicas(rs) != size
	maxReplicas := dReplicas(d) + MaxSurge(d)
	if !sizeChanged && !replicasAnnotationsNeedUpdate(rs, dReplicas(d), maxReplicas) {
		return false, rs, nil
	}
	next := proto.Clone(rs).(*appsv1.ReplicaSet)
	old := rsReplicas(rs)
	next.Spec.Replicas = proto.Int32(size)
	setReplicasAnnotations(next, dReplicas(d), maxReplicas)
	res, err := c.cfg.Client.Update(ctx, next)
	if err != nil {
		return false, rs, fmt.Errorf("scale replica set %s to %d: %w", rs.GetMetadata().GetName(), size, err)
	}
	if sizeChanged {
		op := "up"
		if size < old {
			op = "down"
		}
		c.event(d, record.Normal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", op, rs.GetMetadata().GetName(), old, size)
		c.log.Debug("scaled replica set", "deployment", informer.KeyOf(d), "replicaset", rs.GetMetadata().GetName(), "from", old, "to", size)
	}
	return sizeChanged, res.(*appsv1.ReplicaSet), nil
}

func (c *Controller) event(d *appsv1.Deployment, typ, reason, format string, args ...any) {
	if c.cfg.Recorder == nil {
		return
	}
	obj := proto.Clone(d).(*appsv1.Deployment)
	scheme.SetTypeMeta(obj, c.dKind.APIVersion(), c.dKind.Kind)
	c.cfg.Recorder.Eventf(obj, typ, reason, format, args...)
}
