// Package leaderelection elects one active replica among several through a
// coordination.k8s.io/v1 Lease, as client-go's leaderelection does: the leader renews the
// Lease every RetryPeriod; others take it over when it has not changed for LeaseDuration, as
// measured on their own clock from when they last saw it change (observed time), so clock
// skew between replicas does not matter. Components never touch etcd: the Lease is an API
// object, and the apiserver's optimistic concurrency (resourceVersion) makes taking it a
// compare-and-swap.
package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

// MicroTimeFormat is Kubernetes' MicroTime, the format of a Lease's times.
const MicroTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Config configures an Elector. The durations default to client-go's (15 s, 10 s, 2 s).
type Config struct {
	Client    client.Interface
	Namespace string // of the Lease
	Name      string // of the Lease
	Identity  string // this replica, unique among the candidates
	// LeaseDuration is how long others wait, from the last change they saw, before taking
	// the Lease over.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew before it gives up leading.
	// It must be shorter than LeaseDuration, so a leader stops before others may start.
	RenewDeadline time.Duration
	// RetryPeriod is how often candidates try to acquire and the leader renews.
	RetryPeriod time.Duration
	// OnStartedLeading runs (in its own goroutine) when this replica becomes leader; its
	// context ends when leadership ends.
	OnStartedLeading func(ctx context.Context)
	// OnStoppedLeading runs when leadership ends (or Run returns without having led).
	OnStoppedLeading func()
	// OnNewLeader, if set, is told of each new leader's identity.
	OnNewLeader func(identity string)
	Logger      *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Elector runs an election for one Config.
type Elector struct {
	cfg   Config
	log   *slog.Logger
	lease *scheme.Kind

	mu sync.Mutex
	// observed is the Lease as last read or written, observedAt when it last changed on our
	// clock.
	observed   *coordinationv1.Lease
	observedAt time.Time
	leader     string
	isLeader   bool
}

// New checks cfg and returns an Elector.
func New(cfg Config) (*Elector, error) {
	if cfg.Client == nil || cfg.Namespace == "" || cfg.Name == "" || cfg.Identity == "" {
		return nil, errors.New("leaderelection: Config needs Client, Namespace, Name and Identity")
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	if cfg.RenewDeadline >= cfg.LeaseDuration || cfg.RetryPeriod >= cfg.RenewDeadline {
		return nil, fmt.Errorf("leaderelection: want RetryPeriod (%v) < RenewDeadline (%v) < LeaseDuration (%v)",
			cfg.RetryPeriod, cfg.RenewDeadline, cfg.LeaseDuration)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	k, err := cfg.Client.Scheme().ForName("leases")
	if err != nil {
		return nil, fmt.Errorf("leaderelection: %w", err)
	}
	return &Elector{cfg: cfg, lease: k, log: cfg.Logger.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)}, nil
}

// IsLeader reports whether this replica holds the Lease (as of its last renewal).
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.isLeader
}

// Leader is the identity of the holder as last seen.
func (e *Elector) Leader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader
}

// Run campaigns until it acquires the Lease, leads (OnStartedLeading) while it keeps
// renewing it, and returns when leadership is lost or ctx ends; on ctx's end a leader
// releases the Lease so that another replica takes over at once. Run returns nil when ctx
// ended, and an error when leadership was lost: a component should then stop, as Kubernetes'
// components exit, since another replica may already be acting.
func (e *Elector) Run(ctx context.Context) error {
	defer func() {
		if e.cfg.OnStoppedLeading != nil {
			e.cfg.OnStoppedLeading()
		}
	}()
	if !e.acquire(ctx) {
		return nil
	}
	leadCtx, stopLeading := context.WithCancel(ctx)
	defer stopLeading()
	var wg sync.WaitGroup
	if e.cfg.OnStartedLeading != nil {
		wg.Add(1)
		go func() { defer wg.Done(); e.cfg.OnStartedLeading(leadCtx) }()
	}
	err := e.renew(ctx)
	stopLeading()
	wg.Wait()
	if ctx.Err() != nil {
		e.release()
		return nil
	}
	return err
}

// acquire tries every RetryPeriod until it holds the Lease (true) or ctx ends (false).
func (e *Elector) acquire(ctx context.Context) bool {
	e.log.Info("campaigning for leadership")
	for {
		if e.tryAcquireOrRenew(ctx) {
			e.log.Info("became leader")
			return true
		}
		if !sleep(ctx, e.cfg.RetryPeriod) {
			return false
		}
	}
}

// renew keeps the Lease every RetryPeriod; it returns when a renewal could not succeed
// within RenewDeadline (leadership lost) or ctx ends.
func (e *Elector) renew(ctx context.Context) error {
	for {
		if !sleep(ctx, e.cfg.RetryPeriod) {
			return nil
		}
		deadline := time.Now().Add(e.cfg.RenewDeadline)
		for !e.tryAcquireOrRenew(ctx) {
			if ctx.Err() != nil {
				return nil
			}
			if time.Now().After(deadline) {
				e.setLeader(false)
				e.log.Error("leadership lost: could not renew the lease in time", "renewDeadline", e.cfg.RenewDeadline)
				return fmt.Errorf("leaderelection: lost lease %s/%s", e.cfg.Namespace, e.cfg.Name)
			}
			if !sleep(ctx, e.cfg.RetryPeriod/4) {
				return nil
			}
		}
	}
}

// tryAcquireOrRenew takes or renews the Lease if it is free, expired or ours.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	now := e.cfg.Now()
	stamp := now.UTC().Format(MicroTimeFormat)
	duration := int32(e.cfg.LeaseDuration.Round(time.Second) / time.Second)
	obj, err := e.cfg.Client.Get(ctx, e.lease, e.cfg.Namespace, e.cfg.Name)
	if apierrors.IsNotFound(err) {
		l := &coordinationv1.Lease{Metadata: &metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
			Spec: &coordinationv1.LeaseSpec{HolderIdentity: e.cfg.Identity, LeaseDurationSeconds: &duration,
				AcquireTime: stamp, RenewTime: stamp, LeaseTransitions: proto.Int32(0)}}
		created, err := e.cfg.Client.Create(ctx, l)
		if err != nil {
			return false // another candidate created it first
		}
		e.observe(created.(*coordinationv1.Lease), now)
		e.setLeader(true)
		return true
	}
	if err != nil {
		e.log.Warn("cannot read the lease", "error", err)
		return false
	}
	cur := obj.(*coordinationv1.Lease)
	e.observe(cur, now)
	holder := cur.GetSpec().GetHolderIdentity()
	e.mu.Lock()
	observedAt := e.observedAt
	e.mu.Unlock()
	expired := observedAt.Add(time.Duration(cur.GetSpec().GetLeaseDurationSeconds()) * time.Second).Before(now)
	if holder != "" && holder != e.cfg.Identity && !expired {
		e.setLeader(false)
		return false
	}
	next := proto.Clone(cur).(*coordinationv1.Lease)
	if next.Spec == nil {
		next.Spec = &coordinationv1.LeaseSpec{}
	}
	if holder != e.cfg.Identity {
		next.Spec.HolderIdentity = e.cfg.Identity
		next.Spec.AcquireTime = stamp
		next.Spec.LeaseTransitions = proto.Int32(cur.GetSpec().GetLeaseTransitions() + 1)
	}
	next.Spec.RenewTime = stamp
	next.Spec.LeaseDurationSeconds = &duration
	updated, err := e.cfg.Client.Update(ctx, next) // conditional on cur's resourceVersion
	if err != nil {
		if !apierrors.IsConflict(err) {
			e.log.Warn("cannot update the lease", "error", err)
		}
		return false
	}
	e.observe(updated.(*coordinationv1.Lease), now)
	e.setLeader(true)
	return true
}

// observe records l; when its holder or renew time changed, now is when we saw it change.
func (e *Elector) observe(l *coordinationv1.Lease, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.observed == nil || e.observed.GetSpec().GetHolderIdentity() != l.GetSpec().GetHolderIdentity() ||
		e.observed.GetSpec().GetRenewTime() != l.GetSpec().GetRenewTime() {
		e.observedAt = now
	}
	e.observed = l
	if holder := l.GetSpec().GetHolderIdentity(); holder != e.leader {
		e.leader = holder
		if holder != "" && e.cfg.OnNewLeader != nil {
			go e.cfg.OnNewLeader(holder)
		}
	}
}

func (e *Elector) setLeader(v bool) {
	e.mu.Lock()
	e.isLeader = v
	e.mu.Unlock()
}

// release gives the Lease up (empty holder, one-second duration), so that a candidate takes
// it over at its next try instead of waiting out LeaseDuration. It reads the Lease afresh: a
// renewal cut short by the shutdown may have been stored without its answer arriving.
func (e *Elector) release() {
	e.mu.Lock()
	was := e.isLeader
	e.isLeader = false
	e.mu.Unlock()
	if !was {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	for range 3 {
		obj, err := e.cfg.Client.Get(ctx, e.lease, e.cfg.Namespace, e.cfg.Name)
		if err != nil {
			e.log.Warn("could not release the lease", "error", err)
			return
		}
		next := proto.Clone(obj).(*coordinationv1.Lease)
		if next.GetSpec().GetHolderIdentity() != e.cfg.Identity {
			return // someone else holds it already
		}
		next.Spec.HolderIdentity = ""
		next.Spec.LeaseDurationSeconds = proto.Int32(1)
		next.Spec.RenewTime = e.cfg.Now().UTC().Format(MicroTimeFormat)
		if _, err = e.cfg.Client.Update(ctx, next); err == nil {
			e.log.Info("released the lease")
			return
		}
		if !apierrors.IsConflict(err) {
			e.log.Warn("could not release the lease", "error", err)
			return
		}
	}
}

// sleep waits d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
