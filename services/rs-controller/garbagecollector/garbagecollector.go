// Package garbagecollector deletes objects whose owners are gone, as Kubernetes' garbage
// collector does, following ownerReferences across every kind of the scheme:
//
//   - Background (the default): the owner goes at once; each dependent whose owners are all
//     gone is deleted in turn (with the policy its own finalizers record).
//   - Foreground: the owner waits with the foregroundDeletion finalizer while its dependents
//     are deleted (themselves in the foreground); once no dependent that blocks it
//     (blockOwnerDeletion) is left, the finalizer goes and so does the owner.
//   - Orphan: the owner waits with the orphan finalizer while its references are removed from
//     its dependents, which stay; then the finalizer goes.
//
// The collector builds no graph of its own: every kind's shared informer indexes objects by
// their owners' uids, so an owner's dependents are one index lookup per kind. It is level-
// triggered: an object is looked at when it appears, when its owners or deletion state change,
// and when one of its owners goes; an owner missing from the caches is confirmed with a read
// from the API before anything is deleted. It renews the Lease kube-system/garbage-collector
// while it runs, which is how the apiserver knows that Foreground and Orphan deletes will be
// carried out.
package garbagecollector

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/leaderelection"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// Name is the controller's name in logs, metrics and --controllers.
const Name = "garbagecollector"

// ownerIndex indexes objects by the uids of their owners.
const ownerIndex = "gc-owner-uid"

// Lease timing: renewed every leaseRenew, valid for leaseDuration.
const (
	leaseDuration = 40 * time.Second
	leaseRenew    = 10 * time.Second
)

// ignored are kinds the collector does not follow (as Kubernetes ignores events: they are
// many, short-lived and never own anything).
var ignored = map[string]bool{"v1/Event": true}

// Config configures the collector.
type Config struct {
	Client    client.Interface
	Informers *informer.Factory
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	// Identity names this collector in its Lease.
	Identity string
	// Workers process objects in parallel (Kubernetes' default 20).
	Workers int
}

// item identifies one object; the uid tells a namesake apart.
type item struct {
	gvk, namespace, name, uid string
}

// Collector is the garbage collector.
type Collector struct {
	cfg       Config
	log       *slog.Logger
	kinds     map[string]*scheme.Kind // by apiVersion/kind
	informers map[string]*informer.Informer
	queue     *workqueue.Queue[item]
	absent    *uidCache // owners confirmed gone
	metrics   *controller.Metrics
	leaseKind *scheme.Kind
}

// New builds the collector on the factory's informers (one per followed kind) and registers
// its handlers and owner index; call Run.
func New(cfg Config) (*Collector, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("garbagecollector: Config needs Client and Informers")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 20
	}
	if cfg.Identity == "" {
		cfg.Identity = Name
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	g := &Collector{cfg: cfg, log: log.With("controller", Name), kinds: map[string]*scheme.Kind{},
		informers: map[string]*informer.Informer{}, queue: workqueue.New[item](workqueue.WithName(Name)),
		absent: newUIDCache(10000), metrics: controller.NewMetrics(cfg.Metrics)}
	g.leaseKind, _ = cfg.Client.Scheme().ForName("leases")
	for _, k := range cfg.Client.Scheme().Kinds() {
		gvk := k.APIVersion() + "/" + k.Kind
		if ignored[gvk] {
			continue
		}
		inf := cfg.Informers.For(k)
		if err := inf.Store().AddIndexers(informer.Indexers{ownerIndex: ownerUIDs}); err != nil {
			return nil, fmt.Errorf("index %s by owner: %w", k.Resource, err)
		}
		g.kinds[gvk], g.informers[gvk] = k, inf
		inf.AddEventHandler(informer.HandlerFuncs{
			AddFunc:    func(obj scheme.Object) { g.changed(gvk, nil, obj) },
			UpdateFunc: func(old, obj scheme.Object) { g.changed(gvk, old, obj) },
			DeleteFunc: func(obj scheme.Object) { g.deleted(obj) },
		})
	}
	return g, nil
}

func ownerUIDs(obj scheme.Object) ([]string, error) {
	refs := obj.GetMetadata().GetOwnerReferences()
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.GetUid())
	}
	return out, nil
}

func itemOf(gvk string, obj scheme.Object) item {
	md := obj.GetMetadata()
	return item{gvk: gvk, namespace: md.GetNamespace(), name: md.GetName(), uid: md.GetUid()}
}

// Run collects until ctx ends, renewing the collector's Lease meanwhile.
func (g *Collector) Run(ctx context.Context) error {
	g.cfg.Informers.Start(ctx)
	infs := make([]*informer.Informer, 0, len(g.informers))
	for _, inf := range g.informers {
		infs = append(infs, inf)
	}
	if !informer.WaitForCacheSync(ctx, infs...) {
		return ctx.Err()
	}
	// Announce the collector only once it can act.
	if err := g.renewLease(ctx); err != nil {
		g.log.Warn("cannot renew the garbage collector's lease", "error", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { g.keepLease(ctx) })
	g.log.Info("garbage collector started", "kinds", len(g.kinds))
	workqueue.Run(ctx, g.queue, g.cfg.Workers, func(ctx context.Context, it item) error {
		start := time.Now()
		err := g.process(ctx, it)
		g.metrics.Observe(Name, start, err)
		if err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			g.log.Warn("garbage collection failed; will retry", "kind", it.gvk, "object", it.namespace+"/"+it.name, "error", err)
		}
		return err
	})
	wg.Wait()
	return nil
}

// ---- event handlers ----

func (g *Collector) changed(gvk string, old, obj scheme.Object) {
	md := obj.GetMetadata()
	if old != nil {
		omd := old.GetMetadata()
		if slices.EqualFunc(omd.GetOwnerReferences(), md.GetOwnerReferences(), func(a, b *metav1.OwnerReference) bool { return proto.Equal(a, b) }) &&
			omd.GetDeletionTimestamp() == md.GetDeletionTimestamp() && slices.Equal(omd.GetFinalizers(), md.GetFinalizers()) {
			return // nothing the collector reads changed
		}
	}
	if len(md.GetOwnerReferences()) > 0 || (md.GetDeletionTimestamp() != "" && hasGCFinalizer(md)) {
		g.queue.Add(itemOf(gvk, obj))
	}
}

// deleted: the object's dependents may have lost their last owner, and an owner deleting in
// the foreground may have lost its last blocking dependent.
func (g *Collector) deleted(obj scheme.Object) {
	md := obj.GetMetadata()
	g.enqueueDependents(md.GetUid())
	for _, ref := range md.GetOwnerReferences() {
		if k := g.kindOf(ref); k != nil {
			g.queue.Add(item{gvk: k.APIVersion() + "/" + k.Kind, namespace: ownerNamespace(k, md), name: ref.GetName(), uid: ref.GetUid()})
		}
	}
}

func (g *Collector) enqueueDependents(uid string) {
	for gvk, inf := range g.informers {
		deps, _ := inf.Store().ByIndex(ownerIndex, uid)
		for _, d := range deps {
			g.queue.Add(itemOf(gvk, d))
		}
	}
}

// dependents lists, for every kind, the cached objects with an owner reference to uid.
func (g *Collector) dependents(uid string) map[string][]scheme.Object {
	out := map[string][]scheme.Object{}
	for gvk, inf := range g.informers {
		if deps, _ := inf.Store().ByIndex(ownerIndex, uid); len(deps) > 0 {
			out[gvk] = deps
		}
	}
	return out
}

func hasGCFinalizer(md *metav1.ObjectMeta) bool {
	return slices.Contains(md.GetFinalizers(), controller.FinalizerOrphanDependents) ||
		slices.Contains(md.GetFinalizers(), controller.FinalizerDeleteDependents)
}

func (g *Collector) kindOf(ref *metav1.OwnerReference) *scheme.Kind {
	return g.kinds[ref.GetApiVersion()+"/"+ref.GetKind()]
}

// ownerNamespace: a namespaced owner lives in its dependent's namespace.
func ownerNamespace(k *scheme.Kind, dependent *metav1.ObjectMeta) string {
	if k.Namespaced {
		return dependent.GetNamespace()
	}
	return ""
}

// ---- processing ----

func (g *Collector) process(ctx context.Context, it item) error {
	k := g.kinds[it.gvk]
	obj, ok := g.informers[it.gvk].Store().Get(it.namespace, it.name)
	if !ok || obj.GetMetadata().GetUid() != it.uid {
		return nil // gone, or a namesake: its own events bring it here
	}
	md := obj.GetMetadata()
	if md.GetDeletionTimestamp() != "" {
		switch {
		case slices.Contains(md.GetFinalizers(), controller.FinalizerOrphanDependents):
			return g.orphanDependents(ctx, k, obj)
		case slices.Contains(md.GetFinalizers(), controller.FinalizerDeleteDependents):
			return g.deleteDependents(ctx, k, obj)
		}
		return nil
	}
	return g.collect(ctx, k, obj, false)
}

// collect decides about an object with owners: it stays while an owner exists, loses its
// references to owners that are gone, and is deleted once all its owners are gone. The
// caches may lag behind the API (an owner's orphaning delete can reach the collector before
// the updates that removed its references from the dependents), so a delete is decided only
// on the object as the API has it now (confirmed), and made on the condition that it has not
// changed since.
func (g *Collector) collect(ctx context.Context, k *scheme.Kind, obj scheme.Object, confirmed bool) error {
	md := obj.GetMetadata()
	if len(md.GetOwnerReferences()) == 0 {
		return nil
	}
	var solid, dangling, waiting []*metav1.OwnerReference
	for _, ref := range md.GetOwnerReferences() {
		state, err := g.ownerState(ctx, ref, md)
		if err != nil {
			return err
		}
		switch state {
		case ownerSolid:
			solid = append(solid, ref)
		case ownerGone:
			dangling = append(dangling, ref)
		case ownerDeletingDependents:
			waiting = append(waiting, ref)
		}
	}
	switch {
	case len(solid) > 0:
		// Still owned: only references to owners that are gone (or waiting for their
		// dependents to go) are dropped.
		if len(dangling)+len(waiting) == 0 {
			return nil
		}
		drop := map[string]bool{}
		for _, r := range append(dangling, waiting...) {
			drop[r.GetUid()] = true
		}
		return g.removeOwnerRefs(ctx, k, obj, drop)
	case !confirmed:
		live, err := g.cfg.Client.Get(ctx, k, md.GetNamespace(), md.GetName())
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return fmt.Errorf("read %s %s/%s before deleting it: %w", k.Kind, md.GetNamespace(), md.GetName(), err)
		case live.GetMetadata().GetUid() != md.GetUid() || live.GetMetadata().GetDeletionTimestamp() != "":
			return nil // a namesake, or already being deleted: its own events bring it here
		}
		return g.collect(ctx, k, live, true)
	case len(waiting) > 0 && g.hasDependents(md.GetUid()):
		// An owner waits for this object, which has dependents of its own: they go first.
		return g.delete(ctx, k, md, registryForeground)
	default:
		policy := registryBackground
		switch {
		case slices.Contains(md.GetFinalizers(), controller.FinalizerOrphanDependents):
			policy = registryOrphan
		case slices.Contains(md.GetFinalizers(), controller.FinalizerDeleteDependents):
			policy = registryForeground
		}
		return g.delete(ctx, k, md, policy)
	}
}

const (
	registryBackground = "Background"
	registryForeground = "Foreground"
	registryOrphan     = "Orphan"
)

type ownerStateKind int

const (
	ownerSolid ownerStateKind = iota
	ownerGone
	ownerDeletingDependents
)

// ownerState says whether an owner exists (solid), is gone (or replaced by a namesake), or is
// being deleted in the foreground. The caches may lag, so an owner they do not have is read
// from the API before it is declared gone; owners confirmed gone are remembered.
func (g *Collector) ownerState(ctx context.Context, ref *metav1.OwnerReference, dependent *metav1.ObjectMeta) (ownerStateKind, error) {
	k := g.kindOf(ref)
	if k == nil {
		return ownerSolid, nil // a kind we do not know: never a reason to delete
	}
	if g.absent.has(ref.GetUid()) {
		return ownerGone, nil
	}
	ns := ownerNamespace(k, dependent)
	owner, ok := g.informers[k.APIVersion()+"/"+k.Kind].Store().Get(ns, ref.GetName())
	if !ok || owner.GetMetadata().GetUid() != ref.GetUid() {
		live, err := g.cfg.Client.Get(ctx, k, ns, ref.GetName())
		switch {
		case apierrors.IsNotFound(err):
			g.absent.add(ref.GetUid())
			return ownerGone, nil
		case err != nil:
			return ownerSolid, fmt.Errorf("look up owner %s %s: %w", ref.GetKind(), ref.GetName(), err)
		case live.GetMetadata().GetUid() != ref.GetUid():
			g.absent.add(ref.GetUid())
			return ownerGone, nil
		}
		owner = live
	}
	omd := owner.GetMetadata()
	if omd.GetDeletionTimestamp() != "" && slices.Contains(omd.GetFinalizers(), controller.FinalizerDeleteDependents) {
		return ownerDeletingDependents, nil
	}
	return ownerSolid, nil
}

func (g *Collector) hasDependents(uid string) bool {
	for _, inf := range g.informers {
		if deps, _ := inf.Store().ByIndex(ownerIndex, uid); len(deps) > 0 {
			return true
		}
	}
	return false
}

// delete deletes an object with a propagation policy, on the condition that it is still the
// object the collector looked at, unchanged (after a conflict it is looked at again).
func (g *Collector) delete(ctx context.Context, k *scheme.Kind, md *metav1.ObjectMeta, policy string) error {
	_, err := g.cfg.Client.Delete(ctx, k, md.GetNamespace(), md.GetName(),
		client.DeleteOptions{UID: md.GetUid(), ResourceVersion: md.GetResourceVersion(), PropagationPolicy: policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s/%s: %w", k.Kind, md.GetNamespace(), md.GetName(), err)
	}
	g.log.Debug("deleted", "kind", k.Kind, "object", md.GetNamespace()+"/"+md.GetName(), "policy", policy)
	return nil
}

// deleteDependents carries out a foreground deletion: the owner's dependents are deleted
// (they see the owner waiting and go in the foreground themselves), and once none that blocks
// the owner is left the foregroundDeletion finalizer is removed.
func (g *Collector) deleteDependents(ctx context.Context, k *scheme.Kind, owner scheme.Object) error {
	uid := owner.GetMetadata().GetUid()
	blocking := 0
	for gvk, deps := range g.dependents(uid) {
		for _, d := range deps {
			dmd := d.GetMetadata()
			for _, ref := range dmd.GetOwnerReferences() {
				if ref.GetUid() == uid && ref.GetBlockOwnerDeletion() {
					blocking++
				}
			}
			if dmd.GetDeletionTimestamp() == "" {
				g.queue.Add(itemOf(gvk, d))
			}
		}
	}
	if blocking > 0 {
		return nil // each dependent's deletion brings the owner back here
	}
	return g.removeFinalizer(ctx, k, owner, controller.FinalizerDeleteDependents)
}

// orphanDependents removes the owner's references from all its dependents, then the orphan
// finalizer.
func (g *Collector) orphanDependents(ctx context.Context, k *scheme.Kind, owner scheme.Object) error {
	uid := owner.GetMetadata().GetUid()
	var errs []error
	for gvk, deps := range g.dependents(uid) {
		for _, d := range deps {
			if err := g.removeOwnerRefs(ctx, g.kinds[gvk], d, map[string]bool{uid: true}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return g.removeFinalizer(ctx, k, owner, controller.FinalizerOrphanDependents)
}

// removeOwnerRefs drops the references to the owners in drop from obj, re-reading it on
// conflicts.
func (g *Collector) removeOwnerRefs(ctx context.Context, k *scheme.Kind, obj scheme.Object, drop map[string]bool) error {
	return g.modify(ctx, k, obj, func(md *metav1.ObjectMeta) bool {
		kept := slices.DeleteFunc(md.OwnerReferences, func(r *metav1.OwnerReference) bool { return drop[r.GetUid()] })
		changed := len(kept) != len(md.OwnerReferences)
		md.OwnerReferences = kept
		return changed
	})
}

func (g *Collector) removeFinalizer(ctx context.Context, k *scheme.Kind, obj scheme.Object, finalizer string) error {
	return g.modify(ctx, k, obj, func(md *metav1.ObjectMeta) bool {
		if !slices.Contains(md.Finalizers, finalizer) {
			return false
		}
		md.Finalizers = slices.DeleteFunc(md.Finalizers, func(f string) bool { return f == finalizer })
		return true
	})
}

// modify applies change to obj's metadata and writes it, reading the latest version after a
// conflict (a few times; then the error goes back to the queue).
func (g *Collector) modify(ctx context.Context, k *scheme.Kind, obj scheme.Object, change func(md *metav1.ObjectMeta) bool) error {
	uid := obj.GetMetadata().GetUid()
	cur := proto.Clone(obj).(scheme.Object)
	for attempt := 0; ; attempt++ {
		if !change(cur.GetMetadata()) {
			return nil
		}
		_, err := g.cfg.Client.Update(ctx, cur)
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt >= 3 {
			return fmt.Errorf("update %s %s: %w", k.Kind, obj.GetMetadata().GetName(), err)
		}
		md := obj.GetMetadata()
		fresh, gerr := g.cfg.Client.Get(ctx, k, md.GetNamespace(), md.GetName())
		if apierrors.IsNotFound(gerr) {
			return nil
		}
		if gerr != nil {
			return fmt.Errorf("update %s %s: %w", k.Kind, md.GetName(), err)
		}
		if fresh.GetMetadata().GetUid() != uid {
			return nil
		}
		cur = fresh
	}
}

// ---- the liveness Lease ----

func (g *Collector) keepLease(ctx context.Context) {
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			g.releaseLease()
			return
		case <-t.C:
			if err := g.renewLease(ctx); err != nil && ctx.Err() == nil {
				g.log.Warn("cannot renew the garbage collector's lease", "error", err)
			}
		}
	}
}

func (g *Collector) renewLease(ctx context.Context) error {
	now := time.Now().UTC().Format(leaderelection.MicroTimeFormat)
	ns, name := controller.GarbageCollectorLeaseNamespace, controller.GarbageCollectorLeaseName
	for range 3 {
		obj, err := g.cfg.Client.Get(ctx, g.leaseKind, ns, name)
		if apierrors.IsNotFound(err) {
			_, err = g.cfg.Client.Create(ctx, &coordinationv1.Lease{Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: &coordinationv1.LeaseSpec{HolderIdentity: g.cfg.Identity, LeaseDurationSeconds: proto.Int32(int32(leaseDuration / time.Second)),
					AcquireTime: now, RenewTime: now}})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return err
		}
		if err != nil {
			return err
		}
		l := obj.(*coordinationv1.Lease)
		if l.Spec == nil {
			l.Spec = &coordinationv1.LeaseSpec{}
		}
		if l.Spec.HolderIdentity != g.cfg.Identity {
			l.Spec.AcquireTime = now
		}
		l.Spec.HolderIdentity, l.Spec.RenewTime = g.cfg.Identity, now
		l.Spec.LeaseDurationSeconds = proto.Int32(int32(leaseDuration / time.Second))
		if _, err = g.cfg.Client.Update(ctx, l); !apierrors.IsConflict(err) {
			return err
		}
	}
	return errors.New("lease: too many conflicts")
}

// releaseLease says at once that this collector stopped (if it still holds the Lease).
func (g *Collector) releaseLease() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	obj, err := g.cfg.Client.Get(ctx, g.leaseKind, controller.GarbageCollectorLeaseNamespace, controller.GarbageCollectorLeaseName)
	if err != nil {
		return
	}
	l := obj.(*coordinationv1.Lease)
	if l.GetSpec().GetHolderIdentity() != g.cfg.Identity {
		return
	}
	l.Spec.HolderIdentity = ""
	_, _ = g.cfg.Client.Update(ctx, l)
}

// ---- owners known to be gone ----

// uidCache is a bounded set of uids, the oldest forgotten first.
type uidCache struct {
	mu    sync.Mutex
	max   int
	set   map[string]*list.Element
	order *list.List
}

func newUIDCache(max int) *uidCache {
	return &uidCache{max: max, set: map[string]*list.Element{}, order: list.New()}
}

func (c *uidCache) has(uid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.set[uid]
	return ok
}

func (c *uidCache) add(uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.set[uid]; ok {
		return
	}
	c.set[uid] = c.order.PushFront(uid)
	if c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.set, oldest.Value.(string))
	}
}
