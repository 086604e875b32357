package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/labels"
)

// ControllerOf returns the owner reference with controller: true, or nil.
func ControllerOf(md *metav1.ObjectMeta) *metav1.OwnerReference {
	for _, ref := range md.GetOwnerReferences() {
		if ref.GetController() {
			return ref
		}
	}
	return nil
}

// NewControllerRef is the owner reference a controller puts on what it creates or adopts:
// controller, and blocking the owner's foreground deletion until the dependent is gone.
func NewControllerRef(k *scheme.Kind, md *metav1.ObjectMeta) *metav1.OwnerReference {
	return &metav1.OwnerReference{ApiVersion: k.APIVersion(), Kind: k.Kind, Name: md.GetName(),
		Uid: md.GetUid(), Controller: proto.Bool(true), BlockOwnerDeletion: proto.Bool(true)}
}

// RefManager claims objects for one controller object, as Kubernetes' ControllerRefManager:
// objects it controls stay claimed while they match its selector and are released (their
// controller reference removed) when they stop matching; orphans that match are adopted.
// Objects controlled by someone else are never touched.
type RefManager struct {
	Client    client.Interface
	OwnerKind *scheme.Kind
	Owner     scheme.Object
	Selector  labels.Selector
	// CanAdopt is asked once, before the first adoption: Kubernetes re-reads the owner from
	// the API (not the cache) so that an owner being deleted, or replaced by a namesake,
	// adopts nothing.
	CanAdopt func(ctx context.Context) error

	adoptChecked bool
	adoptErr     error
}

// Claim returns the objects the owner controls after adoption and release. Objects that
// could not be adopted or released are left out (or kept) and the first error is returned,
// so the caller retries; objects that went away meanwhile are simply dropped.
func (m *RefManager) Claim(ctx context.Context, objs []scheme.Object) ([]scheme.Object, error) {
	ownerMD := m.Owner.GetMetadata()
	var claimed []scheme.Object
	var errs []error
	for _, obj := range objs {
		md := obj.GetMetadata()
		matches := m.Selector.Matches(md.GetLabels())
		ref := ControllerOf(md)
		switch {
		case ref != nil && ref.GetUid() != ownerMD.GetUid():
			// Someone else's.
		case ref != nil && matches:
			claimed = append(claimed, obj)
		case ref != nil:
			// Ours but no longer selected: let it go (unless we are going away ourselves, in
			// which case the garbage collector decides).
			if ownerMD.GetDeletionTimestamp() != "" {
				continue
			}
			if err := m.release(ctx, obj); err != nil {
				errs = append(errs, err)
			}
		case matches && ownerMD.GetDeletionTimestamp() == "" && md.GetDeletionTimestamp() == "":
			adopted, err := m.adopt(ctx, obj)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if adopted != nil {
				claimed = append(claimed, adopted)
			}
		}
	}
	return claimed, errors.Join(errs...)
}

// adopt sets the owner as controller of obj. It returns nil (and no error) when obj is gone or
// no longer an orphan the owner selects.
func (m *RefManager) adopt(ctx context.Context, obj scheme.Object) (scheme.Object, error) {
	if !m.adoptChecked {
		m.adoptChecked = true
		if m.CanAdopt != nil {
			m.adoptErr = m.CanAdopt(ctx)
		}
	}
	if m.adoptErr != nil {
		return nil, fmt.Errorf("cannot adopt: %w", m.adoptErr)
	}
	return m.updateRefs(ctx, obj, "adopt", func(md *metav1.ObjectMeta) bool {
		if ControllerOf(md) != nil || !m.Selector.Matches(md.GetLabels()) || md.GetDeletionTimestamp() != "" {
			return false
		}
		md.OwnerReferences = append(md.OwnerReferences, NewControllerRef(m.OwnerKind, m.Owner.GetMetadata()))
		return true
	})
}

// release removes the owner's reference from obj.
func (m *RefManager) release(ctx context.Context, obj scheme.Object) error {
	uid := m.Owner.GetMetadata().GetUid()
	_, err := m.updateRefs(ctx, obj, "release", func(md *metav1.ObjectMeta) bool {
		kept := slices.DeleteFunc(md.OwnerReferences, func(r *metav1.OwnerReference) bool { return r.GetUid() == uid })
		changed := len(kept) != len(md.OwnerReferences)
		md.OwnerReferences = kept
		return changed
	})
	return err
}

// updateRefs writes change to a copy of obj. The cached copy is often a little behind (a
// pod's status changes all the time), so after a conflict change is applied again to the
// object as the API has it, a few times. It returns the written object, or nil when obj is
// gone or change had nothing to do.
func (m *RefManager) updateRefs(ctx context.Context, obj scheme.Object, verb string, change func(md *metav1.ObjectMeta) bool) (scheme.Object, error) {
	uid, name := obj.GetMetadata().GetUid(), obj.GetMetadata().GetName()
	cur := obj
	for attempt := 1; ; attempt++ {
		next := proto.Clone(cur).(scheme.Object)
		if !change(next.GetMetadata()) {
			return nil, nil
		}
		updated, err := m.Client.Update(ctx, next)
		switch {
		case err == nil:
			return updated, nil
		case apierrors.IsNotFound(err):
			return nil, nil
		case !apierrors.IsConflict(err) || attempt == 3:
			return nil, fmt.Errorf("%s %s %s: %w", verb, obj.GetKind(), name, err)
		}
		k, kerr := m.Client.Scheme().ForObject(obj)
		if kerr != nil {
			return nil, fmt.Errorf("%s %s %s: %w", verb, obj.GetKind(), name, errors.Join(err, kerr))
		}
		fresh, gerr := m.Client.Get(ctx, k, obj.GetMetadata().GetNamespace(), name)
		switch {
		case apierrors.IsNotFound(gerr):
			return nil, nil
		case gerr != nil:
			return nil, fmt.Errorf("%s %s %s: %w", verb, obj.GetKind(), name, errors.Join(err, gerr))
		case fresh.GetMetadata().GetUid() != uid:
			return nil, nil // replaced by a namesake
		}
		cur = fresh
	}
}

// RecheckOwner is the usual CanAdopt: the owner, read fresh from the API, must still be the
// same object (same uid) and not being deleted.
func RecheckOwner(c client.Interface, k *scheme.Kind, owner scheme.Object) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		md := owner.GetMetadata()
		fresh, err := c.Get(ctx, k, md.GetNamespace(), md.GetName())
		if err != nil {
			return err
		}
		if fresh.GetMetadata().GetUid() != md.GetUid() {
			return fmt.Errorf("original %s %s/%s is gone: got uid %s, wanted %s", k.Kind, md.GetNamespace(), md.GetName(),
				fresh.GetMetadata().GetUid(), md.GetUid())
		}
		if fresh.GetMetadata().GetDeletionTimestamp() != "" {
			return fmt.Errorf("%s %s/%s is being deleted", k.Kind, md.GetNamespace(), md.GetName())
		}
		return nil
	}
}
