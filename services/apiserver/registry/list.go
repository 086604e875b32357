package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/fields"
	"github.com/skiff-project/skiff/pkg/labels"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// continueToken is what the opaque continue string holds: the revision the list is read at
// and the first key of the next page.
type continueToken struct {
	Revision int64  `json:"rv"`
	Start    string `json:"start"`
}

// List returns the kind's objects in namespace ns ("" for every namespace) as the kind's list
// message. Every page of a paginated list is read at the revision of the first page, so the
// pages together are one consistent snapshot; a token older than etcd's compaction gets 410.
func (r *Registry) List(ctx context.Context, k *scheme.Kind, ns string, opts ListOptions) (proto.Message, error) {
	var items []scheme.Object
	lm, err := r.list(ctx, k, ns, opts, func(kv storage.KeyValue, filter *Filter) (bool, error) {
		obj := k.New()
		if err := storage.Decode(kv.Value, kv.ModRevision, obj); err != nil {
			return false, apierrors.NewInternal(err)
		}
		scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
		if !filter.Matches(obj) {
			return false, nil
		}
		items = append(items, obj)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	list := k.NewList()
	scheme.SetListItems(list, k, items, lm)
	return list, nil
}

// list reads the objects of a list (see List) and hands each to visit, which reports whether
// it passed the filter (and counts toward the limit). It returns the list's metadata.
func (r *Registry) list(ctx context.Context, k *scheme.Kind, ns string, opts ListOptions,
	visit func(kv storage.KeyValue, filter *Filter) (bool, error)) (*metav1.ListMeta, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	filter, err := NewFilter(k, opts.LabelSelector, opts.FieldSelector)
	if err != nil {
		return nil, err
	}

	prefix := r.CollectionPrefix(k, ns)
	start, end := prefix, storage.PrefixEnd(prefix)
	var rev, minRev int64 // the revision to read at (0: the latest); the least one acceptable
	var ro storage.ReadOptions
	switch {
	case opts.Continue != "":
		tok, err := decodeContinue(opts.Continue)
		if err != nil || !strings.HasPrefix(tok.Start, prefix) {
			return nil, apierrors.NewBadRequestField("continue", "the continue token is not valid for this list")
		}
		start, rev = tok.Start, tok.Revision
	case opts.ResourceVersion == "":
	case opts.ResourceVersion == "0":
		ro.Serializable = true
	default:
		n, _ := parseResourceVersion("resourceVersion", opts.ResourceVersion) // checked by validate
		if opts.ResourceVersionMatch == MatchExact {
			rev = n
		} else {
			minRev = n
		}
	}

	var matched int64
	next := ""
	for {
		var page *storage.Page
		var at []int // with indexed: the positions in page.KVs that can match (a node's pods)
		indexed := false
		if rev == 0 && opts.Continue == "" && (opts.Limit == 0 || !filter.Empty()) {
			// The first page of a list at the latest revision: lists of the collection arriving
			// together share one whole read. A selective list with a limit reads the whole
			// collection too (it would page through all of it to find its few), so it shares
			// the read and continues at its revision from where its limit stopped.
			b, err := r.ranges.readBatch(ctx, start+"\x00"+end, func(ctx context.Context) (*storage.Page, error) {
				return r.store.Range(ctx, start, end, 0, 0, storage.ReadOptions{})
			})
			if err != nil {
				return nil, r.listError(k, ns, opts, rev, err)
			}
			page = b.page
			if node, ok := filter.BoundTo(); ok {
				// A node's pods (a kubelet's list): visit only those, from the read's index.
				at, err = b.nodeIndex(node, func(kv storage.KeyValue) (string, error) { return r.nodeOf(k, kv) })
				if err != nil {
					return nil, err
				}
				indexed = true
			}
		} else {
			var err error
			page, err = r.store.Range(ctx, start, end, rev, opts.Limit, ro)
			if err != nil {
				return nil, r.listError(k, ns, opts, rev, err)
			}
		}
		if minRev > page.Revision {
			// The latest state etcd has is older than the version asked for.
			return nil, apierrors.NewTooLargeResourceVersion(minRev, page.Revision)
		}
		rev = page.Revision
		n := len(page.KVs)
		if indexed {
			n = len(at)
		}
		for j := range n {
			kv := page.KVs[j]
			if indexed {
				kv = page.KVs[at[j]]
			}
			r.listEvaluated.Add(1)
			ok, err := visit(kv, filter)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			r.listReturned.Add(1)
			matched++
			if opts.Limit > 0 && matched == opts.Limit {
				if j < n-1 || page.More {
					next = kv.Key + "\x00"
				}
				break
			}
		}
		if next != "" || !page.More || len(page.KVs) == 0 || (opts.Limit > 0 && matched == opts.Limit) {
			break
		}
		start = page.KVs[len(page.KVs)-1].Key + "\x00"
	}

	lm := &metav1.ListMeta{ResourceVersion: strconv.FormatInt(rev, 10)}
	if next != "" {
		lm.Continue = encodeContinue(continueToken{Revision: rev, Start: next})
	}
	return lm, nil
}

// nodeOf returns the node a stored pod is bound to, decoding it through the object cache.
func (r *Registry) nodeOf(k *scheme.Kind, kv storage.KeyValue) (string, error) {
	c := r.cache.get(kv.Key, kv.ModRevision)
	if c.obj == nil {
		obj, err := decodeListed(k, kv)
		if err != nil {
			return "", err
		}
		c.obj = obj
		r.cache.put(kv.Key, kv.ModRevision, c)
	}
	return fields.Value(c.obj.ProtoReflect(), "spec.nodeName")
}

// listError explains a failed range read of a list read at revision rev.
func (r *Registry) listError(k *scheme.Kind, ns string, opts ListOptions, rev int64, err error) error {
	var future *storage.FutureRevisionError
	switch {
	case errors.Is(err, storage.ErrCompacted) && opts.Continue != "":
		return apierrors.NewGone("The provided continue parameter is too old to display a consistent list " +
			"result. You can start a new list without the continue parameter.")
	case errors.Is(err, storage.ErrCompacted):
		return apierrors.NewGone(fmt.Sprintf("too old resource version: %d (etcd has compacted it)", rev))
	case errors.As(err, &future) && opts.Continue != "":
		// Only a forged or foreign token names a revision etcd has not reached.
		return apierrors.NewBadRequestField("continue", fmt.Sprintf(
			"the continue token is not valid: it names revision %d, beyond the current revision %d",
			future.Requested, future.Current))
	}
	return r.storageError(k, ns, "", err)
}

// Filter selects objects by label and field selectors (lists and watches).
type Filter struct {
	kind   *scheme.Kind
	labels labels.Selector
	fields fields.Selector
	// named are the fields the selector names: a match reads only these, not every
	// selectable field of the kind (a node agent's spec.nodeName over every pod of a list).
	named []string
}

// NewFilter parses selectors for kind k; a bad one, or a field the kind does not let
// selectors name, is a 400 naming the parameter.
func NewFilter(k *scheme.Kind, labelSelector, fieldSelector string) (*Filter, error) {
	lsel, err := labels.Parse(labelSelector)
	if err != nil {
		return nil, apierrors.NewBadRequestField("labelSelector", fmt.Sprintf("unable to parse labelSelector: %v", err))
	}
	fsel, err := fields.Parse(fieldSelector)
	if err != nil {
		return nil, apierrors.NewBadRequestField("fieldSelector", fmt.Sprintf("unable to parse fieldSelector: %v", err))
	}
	var named []string
	for _, req := range fsel.Requirements() {
		if !k.IsSelectable(req.Field) {
			return nil, apierrors.NewBadRequestField("fieldSelector",
				fmt.Sprintf("field label not supported: %s", req.Field))
		}
		if !slices.Contains(named, req.Field) {
			named = append(named, req.Field)
		}
	}
	return &Filter{kind: k, labels: lsel, fields: fsel, named: named}, nil
}

// Empty reports whether the filter selects everything.
func (f *Filter) Empty() bool { return f.labels.Empty() && f.fields.Empty() }

// BoundTo returns the node a pod selector pins with spec.nodeName=NODE (what a kubelet
// watches): only that node's pods can match it.
func (f *Filter) BoundTo() (string, bool) {
	if f.kind.Group != "" || f.kind.Resource != "pods" {
		return "", false
	}
	node, ok := f.fields.RequiresExactMatch("spec.nodeName")
	return node, ok && node != ""
}

// Matches reports whether obj passes both selectors.
func (f *Filter) Matches(obj scheme.Object) bool {
	if !f.labels.Empty() && !f.labels.Matches(obj.GetMetadata().GetLabels()) {
		return false
	}
	if f.fields.Empty() {
		return true
	}
	m := obj.ProtoReflect()
	set := make(fields.Fields, len(f.named))
	for _, name := range f.named {
		set[name], _ = fields.Value(m, name) // a selectable field: checked against the type by the scheme
	}
	return f.fields.Matches(set)
}

func encodeContinue(t continueToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, err
	}
	if t.Revision <= 0 || t.Start == "" {
		return t, errors.New("incomplete continue token")
	}
	return t, nil
}
