// Package storage keeps API objects in etcd as protobuf values. An object's resourceVersion is
// the etcd mod revision of its key: it is never stored, only filled in on read. Writes are
// transactions that compare revisions, so a stale writer gets a conflict instead of
// overwriting a newer object.
package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrExists: create found the key already there.
	ErrExists = errors.New("storage: key already exists")
	// ErrConflict: the key's revision is not the expected one.
	ErrConflict = errors.New("storage: revision conflict")
	// ErrCompacted: the requested revision is older than etcd keeps.
	ErrCompacted = errors.New("storage: revision compacted")
)

// MissingKeyError reports which precondition key of a create was absent.
type MissingKeyError struct{ Key string }

func (e *MissingKeyError) Error() string {
	return fmt.Sprintf("storage: required key %s is missing", e.Key)
}

// Store reads and writes objects under keys in etcd.
type Store struct {
	kv clientv3.KV
}

// New returns a store that uses kv (an etcd client or its KV).
func New(kv clientv3.KV) *Store { return &Store{kv: kv} }

// Encode serialises obj for storage; the resourceVersion is cleared since the key's revision
// is the truth.
func Encode(obj scheme.Object) ([]byte, error) {
	md := obj.GetMetadata()
	rv := ""
	if md != nil {
		rv, md.ResourceVersion = md.ResourceVersion, ""
		defer func() { md.ResourceVersion = rv }()
	}
	b, err := proto.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	return b, nil
}

// Decode fills into from a stored value and sets its resourceVersion to rev.
func Decode(value []byte, rev int64, into scheme.Object) error {
	if err := proto.Unmarshal(value, into); err != nil {
		return fmt.Errorf("decode %T: %w", into, err)
	}
	scheme.Meta(into).ResourceVersion = strconv.FormatInt(rev, 10)
	return nil
}

// Create writes obj at key if the key does not exist and every key in requireKeys does (e.g.
// the object's namespace), in one transaction. It sets obj's resourceVersion and returns the
// new revision.
func (s *Store) Create(ctx context.Context, key string, obj scheme.Object, requireKeys ...string) (int64, error) {
	val, err := Encode(obj)
	if err != nil {
		return 0, err
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	for _, k := range requireKeys {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), ">", 0))
	}
	var elseOps []clientv3.Op
	for _, k := range requireKeys {
		elseOps = append(elseOps, clientv3.OpGet(k, clientv3.WithCountOnly()))
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(val))).Else(elseOps...).Commit()
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		for i, r := range resp.Responses {
			if r.GetResponseRange().GetCount() == 0 {
				return 0, &MissingKeyError{Key: requireKeys[i]}
			}
		}
		return 0, ErrExists
	}
	rev := resp.Header.Revision
	scheme.Meta(obj).ResourceVersion = strconv.FormatInt(rev, 10)
	return rev, nil
}

// Get reads key into into.
func (s *Store) Get(ctx context.Context, key string, into scheme.Object) error {
	resp, err := s.kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ErrNotFound
	}
	kv := resp.Kvs[0]
	return Decode(kv.Value, kv.ModRevision, into)
}

// Update writes obj at key if the key's mod revision is still rev. On success obj gets its new
// resourceVersion.
func (s *Store) Update(ctx context.Context, key string, obj scheme.Object, rev int64) (int64, error) {
	val, err := Encode(obj)
	if err != nil {
		return 0, err
	}
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(val))).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("update %s: %w", key, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().GetCount() == 0 {
			return 0, ErrNotFound
		}
		return 0, ErrConflict
	}
	newRev := resp.Header.Revision
	scheme.Meta(obj).ResourceVersion = strconv.FormatInt(newRev, 10)
	return newRev, nil
}

// Delete removes key if its mod revision is still rev, and returns the deleting revision.
func (s *Store) Delete(ctx context.Context, key string, rev int64) (int64, error) {
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().GetCount() == 0 {
			return 0, ErrNotFound
		}
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
}

// DeletePrefixes removes every key under each prefix in one transaction, guarded by key still
// having revision rev (used to delete a namespace and everything in it at once).
func (s *Store) DeletePrefixes(ctx context.Context, key string, rev int64, prefixes ...string) (int64, error) {
	ops := []clientv3.Op{clientv3.OpDelete(key)}
	for _, p := range prefixes {
		ops = append(ops, clientv3.OpDelete(p, clientv3.WithPrefix()))
	}
	resp, err := s.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(ops...).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().GetCount() == 0 {
			return 0, ErrNotFound
		}
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
}

// KeyValue is one stored object as read by a range.
type KeyValue struct {
	Key         string
	Value       []byte
	ModRevision int64
}

// Page is one range read at a fixed revision.
type Page struct {
	KVs      []KeyValue
	Revision int64 // the revision the page was read at
	More     bool  // keys remain after the last one returned
}

// Range reads up to limit keys in [start, end) at revision rev (0: the current revision).
// Reading every page of a list at the revision of its first page gives a consistent list.
func (s *Store) Range(ctx context.Context, start, end string, rev, limit int64) (*Page, error) {
	opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.kv.Get(ctx, start, opts...)
	if err != nil {
		if isCompacted(err) {
			return nil, ErrCompacted
		}
		return nil, fmt.Errorf("range %s: %w", start, err)
	}
	page := &Page{Revision: resp.Header.Revision, More: resp.More}
	if rev > 0 {
		page.Revision = rev
	}
	page.KVs = make([]KeyValue, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		page.KVs[i] = KeyValue{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision}
	}
	return page, nil
}

// PrefixEnd is the end of the range that holds every key starting with prefix.
func PrefixEnd(prefix string) string { return clientv3.GetPrefixRangeEnd(prefix) }
