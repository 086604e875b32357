package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// GetAtRevision reads object ns/name as it was at etcd revision rev: 404 if it did not exist
// then, 410 if etcd has compacted that revision. The watch uses it for the changes the event
// bus could not carry (oversize markers).
func (r *Registry) GetAtRevision(ctx context.Context, k *scheme.Kind, ns, name string, rev int64) (scheme.Object, error) {
	key := r.Key(k, ns, name)
	page, err := r.store.Range(ctx, key, key+"\x00", rev, 1, storage.ReadOptions{})
	if errors.Is(err, storage.ErrCompacted) {
		return nil, apierrors.NewGone(fmt.Sprintf("too old resource version: %d (compacted)", rev))
	}
	if err != nil {
		return nil, apierrors.NewInternal(err)
	}
	if len(page.KVs) == 0 {
		return nil, apierrors.NewNotFound(k.Group, k.Resource, name)
	}
	obj := k.New()
	if err := storage.Decode(page.KVs[0].Value, page.KVs[0].ModRevision, obj); err != nil {
		return nil, apierrors.NewInternal(err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	return obj, nil
}

// CurrentRevision is etcd's current revision: the resourceVersion of the newest change.
func (r *Registry) CurrentRevision(ctx context.Context) (int64, error) {
	rev, err := r.store.CurrentRevision(ctx)
	if err != nil {
		return 0, apierrors.NewInternal(err)
	}
	return rev, nil
}
