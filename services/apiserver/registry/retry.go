package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// maxConflictPause caps the random pause between two attempts of a contended write.
const maxConflictPause = 32 * time.Millisecond

// readModifyWrite runs attempt on the current object until it succeeds or fails for another
// reason than a concurrent write, as Kubernetes' GuaranteedUpdate does. attempt returns the
// storage error of its write unchanged; a *storage.ConflictError (someone wrote first) means
// try again on their version, which the failed write brought back, so a retry costs no extra
// read. retry false (a write conditional on the version the client read) answers 409 at the
// first conflict instead; a retrying write gives up with 409 only when the request ends.
func (r *Registry) readModifyWrite(ctx context.Context, k *scheme.Kind, ns, name string, retry bool,
	attempt func(cur scheme.Object, rev int64) error) error {
	cur, rev, err := r.latest(ctx, k, ns, name)
	if err != nil {
		return err
	}
	pause := time.Millisecond
	for attempts := 1; ; attempts++ {
		err := attempt(cur, rev)
		var ce *storage.ConflictError
		if !errors.As(err, &ce) {
			if err != nil && attempts > 1 && ctx.Err() != nil {
				// The request ended during an attempt, after earlier ones lost to other writers.
				return gaveUp(k, name, attempts)
			}
			return r.storageError(k, ns, name, err)
		}
		r.writeConflicts.Add(1)
		if !retry {
			return conflict(k, name)
		}
		if cur, rev, err = r.decodeCurrent(k, ce.Current); err != nil {
			return err
		}
		// Random pauses spread the writers contending for one key, so that each round more of
		// them succeed instead of all retrying in step.
		t := time.NewTimer(rand.N(pause) + 1)
		select {
		case <-ctx.Done():
			t.Stop()
			return gaveUp(k, name, attempts)
		case <-t.C:
		}
		pause = min(2*pause, maxConflictPause)
	}
}

// WriteConflicts counts the writes that lost to a concurrent writer (each attempt that did:
// etcd still commits the failed transaction through raft, so they cost it as much as a write).
func (r *Registry) WriteConflicts() int64 { return r.writeConflicts.Load() }

// gaveUp is the answer of a write whose request ended while concurrent writers kept getting
// in first: 409, which a client may retry, as after any conflict.
func gaveUp(k *scheme.Kind, name string, attempts int) error {
	return apierrors.NewConflict(k.Group, k.Resource, name, fmt.Sprintf(
		"the object kept changing: %d attempts lost to concurrent writes before the request ended", attempts))
}

// decodeCurrent turns the value a conflicting write brought back into the object and its mod
// revision.
func (r *Registry) decodeCurrent(k *scheme.Kind, kv storage.KeyValue) (scheme.Object, int64, error) {
	obj := k.New()
	if err := storage.Decode(kv.Value, kv.ModRevision, obj); err != nil {
		return nil, 0, apierrors.NewInternal(err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	rev, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	return obj, rev, nil
}

// storageError turns a storage error into the API's answer; a *apierrors.StatusError (and
// nil) pass through.
func (r *Registry) storageError(k *scheme.Kind, ns, name string, err error) error {
	if err == nil {
		return nil
	}
	var (
		se       *apierrors.StatusError
		tooLarge *storage.TooLargeError
		cond     *storage.ConditionError
		future   *storage.FutureRevisionError
	)
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &tooLarge):
		return apierrors.NewRequestEntityTooLarge(fmt.Sprintf(
			"%s %q would take %d bytes when stored, above the limit of %d bytes per object",
			k.GroupResource(), name, tooLarge.Size, tooLarge.Limit))
	case errors.Is(err, storage.ErrNotFound):
		return apierrors.NewNotFound(k.Group, k.Resource, name)
	case errors.Is(err, storage.ErrExists):
		return apierrors.NewAlreadyExists(k.Group, k.Resource, name)
	case errors.Is(err, storage.ErrConflict):
		return conflict(k, name)
	case errors.As(err, &cond) && cond.Condition.Key == r.namespaceKey(ns):
		return apierrors.NewNotFound("", "namespaces", ns)
	case errors.As(err, &cond) && cond.Condition.Key == r.terminatingKey(ns):
		return apierrors.NewNamespaceTerminating(k.Group, k.Resource, name, ns)
	case errors.As(err, &future):
		return apierrors.NewTooLargeResourceVersion(future.Requested, future.Current)
	case errors.Is(err, storage.ErrCompacted):
		return apierrors.NewGone("The resourceVersion requested is older than the storage keeps: list again without it.")
	case errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeout(fmt.Sprintf("the request did not finish in time: %v", err), 1)
	}
	return apierrors.NewInternal(err)
}
