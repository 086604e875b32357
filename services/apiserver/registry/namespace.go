package registry

import (
	"context"
	"errors"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// A namespace's life, as in Kubernetes: deleting it marks it Terminating (deletionTimestamp,
// status.phase); from then on nothing new may be created in it (403 NamespaceTerminating);
// it goes only when it has no finalizers and holds no object. Its content is never removed
// with it: objects go one by one, each with its own finalizers and grace (the namespace
// controller that deletes them comes later), so no object is lost or left behind.
//
// Every check is made in the transaction of the write it guards:
//   - a create compares the namespace key (it must exist) and the namespace's terminating
//     marker (it must not), a key outside the registry prefix written in the same
//     transaction that marks the namespace Terminating, so a create costs no extra read;
//   - the namespace's removal compares every namespaced kind's key range in it (each must be
//     empty), and removes the marker.
//
// The namespace goes with whichever write finds it ready: the delete of its last object (that
// delete sees the marker and then tries the namespace's removal), the update that removes
// its last finalizer, or a repeated delete of the namespace.

const (
	namespaceActive      = "Active"
	namespaceTerminating = "Terminating"
)

// isImmortalNamespace names the namespaces the system relies on, which cannot be deleted.
func isImmortalNamespace(name string) bool {
	switch name {
	case "default", "kube-system", "kube-public", "kube-node-lease":
		return true
	}
	return false
}

// isNamespaceKind reports whether k is the kind that scopes the others.
func isNamespaceKind(k *scheme.Kind) bool {
	return k.Group == "" && k.Resource == "namespaces" && !k.Namespaced
}

// namespaceKey is where namespace ns is stored.
func (r *Registry) namespaceKey(ns string) string { return r.prefix + "/namespaces/" + ns }

// terminatingKey marks namespace ns as Terminating. It lives outside the registry prefix, so
// the event bus (which carries API objects only) never sees it.
func (r *Registry) terminatingKey(ns string) string {
	return "/skiff/terminating-namespaces" + r.prefix + "/" + ns
}

// namespacedPrefixes are the key prefixes of every object in namespace ns.
func (r *Registry) namespacedPrefixes(ns string) []string {
	var out []string
	for _, k := range r.scheme.Kinds() {
		if k.Namespaced {
			out = append(out, r.CollectionPrefix(k, ns))
		}
	}
	return out
}

// createConditions guard a create in namespace ns: it exists and is not terminating.
func (r *Registry) createConditions(k *scheme.Kind, ns string) []storage.Condition {
	if !k.Namespaced {
		return nil
	}
	return []storage.Condition{storage.KeyExists(r.namespaceKey(ns)), storage.KeyAbsent(r.terminatingKey(ns))}
}

// removeWrite is the write that removes an object for good. A namespace goes only while it
// holds nothing, and takes its marker with it; a namespaced object asks whether its
// namespace is terminating, since its going may let the namespace go.
func (r *Registry) removeWrite(k *scheme.Kind, md *metav1.ObjectMeta, rev int64, dryRun bool) storage.Write {
	w := storage.Write{Key: r.Key(k, md.GetNamespace(), md.GetName()), Rev: rev, DryRun: dryRun}
	switch {
	case isNamespaceKind(k):
		for _, p := range r.namespacedPrefixes(md.GetName()) {
			w.Conditions = append(w.Conditions, storage.PrefixEmpty(p))
		}
		w.Sides = []storage.Side{{Key: r.terminatingKey(md.GetName()), Delete: true}}
	case k.Namespaced:
		w.Probe = []string{r.terminatingKey(md.GetNamespace())}
	}
	return w
}

// storeWrite is the write that stores next over revision rev. A namespace being deleted
// gets its terminating marker in the same transaction.
func (r *Registry) storeWrite(k *scheme.Kind, next scheme.Object, rev int64, dryRun bool) storage.Write {
	md := next.GetMetadata()
	w := storage.Write{Key: r.Key(k, md.GetNamespace(), md.GetName()), Rev: rev, Object: next, DryRun: dryRun}
	if isNamespaceKind(k) && md.GetDeletionTimestamp() != "" {
		w.Sides = []storage.Side{{Key: r.terminatingKey(md.GetName()), Value: md.GetUid()}}
	}
	return w
}

// isNotEmpty reports whether err is a namespace removal refused because it holds objects.
func isNotEmpty(err error) bool {
	var cond *storage.ConditionError
	return errors.As(err, &cond) && cond.Condition.Prefix
}

// finalizeNamespace removes namespace name if it is terminating, has no finalizers and holds
// nothing. It runs after a write that may have made it so; when it cannot finish (etcd
// unreachable, the request ended) the namespace stays Terminating and a repeated delete of it
// completes the removal.
func (r *Registry) finalizeNamespace(ctx context.Context, name string) {
	k, err := r.scheme.ForName("namespaces")
	if err != nil {
		return
	}
	err = r.readModifyWrite(ctx, k, "", name, true, func(cur scheme.Object, rev int64) error {
		if cur.GetMetadata().GetDeletionTimestamp() == "" || hasFinalizers(cur) {
			return nil
		}
		_, err := r.store.Write(ctx, r.removeWrite(k, cur.GetMetadata(), rev, false))
		if isNotEmpty(err) {
			return nil
		}
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		r.log.Warn("namespace stays Terminating until it is deleted again", "namespace", name, "error", err)
	}
}
