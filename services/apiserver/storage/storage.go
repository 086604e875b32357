// Package storage keeps API objects in etcd as protobuf values. An object's resourceVersion is
// the etcd mod revision of its key: it is never stored, only filled in on read. Every write is
// one transaction that compares the key's revision and any conditions on other keys, so a
// stale writer gets a conflict instead of overwriting a newer object, and no check is separate
// from the write it guards.
package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/limits"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrExists: create found the key already there.
	ErrExists = errors.New("storage: key already exists")
	// ErrConflict: the key's revision is not the expected one (a *ConflictError carries the
	// current value).
	ErrConflict = errors.New("storage: revision conflict")
	// ErrCompacted: the requested revision is older than etcd keeps.
	ErrCompacted = errors.New("storage: revision compacted")
	// ErrFutureRevision: the requested revision is newer than etcd's current one (a
	// *FutureRevisionError says both).
	ErrFutureRevision = errors.New("storage: revision is in the future")
	// ErrTooLarge: the encoded object is above limits.MaxObjectBytes (a *TooLargeError says
	// by how much).
	ErrTooLarge = errors.New("storage: object too large")
)

// ConflictError is a write that found the key at another revision. Current is the key's
// value at the time of the failed write, so a retry needs no second read.
type ConflictError struct {
	Key     string
	Current KeyValue
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("storage: %s is at revision %d: conflict", e.Key, e.Current.ModRevision)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// TooLargeError is a write refused because the object's stored encoding is above the limit.
type TooLargeError struct {
	Key         string
	Size, Limit int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("storage: %s would take %d bytes, above the limit of %d", e.Key, e.Size, e.Limit)
}

func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// FutureRevisionError is a read at a revision etcd has not reached.
type FutureRevisionError struct {
	Requested, Current int64
}

func (e *FutureRevisionError) Error() string {
	return fmt.Sprintf("storage: revision %d is newer than the current revision %d", e.Requested, e.Current)
}

func (e *FutureRevisionError) Is(target error) bool { return target == ErrFutureRevision }

// Condition is a check on another key (or every key under a prefix) that a write needs, made
// in the write's own transaction.
type Condition struct {
	Key    string
	Prefix bool // the condition is on every key that starts with Key
	Exists bool // true: the key must exist; false: it (or every key under the prefix) must not
}

// KeyExists is the condition that key exists.
func KeyExists(key string) Condition { return Condition{Key: key, Exists: true} }

// KeyAbsent is the condition that key does not exist.
func KeyAbsent(key string) Condition { return Condition{Key: key} }

// PrefixEmpty is the condition that no key starts with prefix.
func PrefixEmpty(prefix string) Condition { return Condition{Key: prefix, Prefix: true} }

// ConditionError is a write refused because one of its conditions did not hold.
type ConditionError struct{ Condition Condition }

func (e *ConditionError) Error() string {
	c := e.Condition
	switch {
	case c.Prefix:
		return fmt.Sprintf("storage: keys under %s exist", c.Key)
	case c.Exists:
		return fmt.Sprintf("storage: required key %s is missing", c.Key)
	}
	return fmt.Sprintf("storage: key %s exists", c.Key)
}

// Side is a key other than the object's that a write puts or deletes in the same transaction
// (bookkeeping markers that are not API objects).
type Side struct {
	Key    string
	Value  string
	Delete bool
}

// Write is one transactional change of an object's key.
type Write struct {
	Key string
	// Rev is the key's expected mod revision; 0 means the key must not exist (a create).
	Rev int64
	// Object is written at Key; nil deletes Key.
	Object     scheme.Object
	Conditions []Condition
	Sides      []Side
	// Probe lists keys whose existence, read in the same transaction, the result reports.
	Probe []string
	// DryRun makes every check (revision, conditions, size) and writes nothing: the
	// transaction only reads, so etcd's revision does not move.
	DryRun bool
}

// Result is what a successful write reports.
type Result struct {
	// Revision is the revision the write created (etcd's current revision on a dry run).
	Revision int64
	// Probed holds the probed keys that exist.
	Probed map[string]bool
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

// encodeForWrite encodes obj and refuses it above limits.MaxObjectBytes: the one place the
// object size limit is enforced, for every kind of write.
func encodeForWrite(key string, obj scheme.Object) ([]byte, error) {
	val, err := Encode(obj)
	if err != nil {
		return nil, err
	}
	if len(val) > limits.MaxObjectBytes {
		return nil, &TooLargeError{Key: key, Size: len(val), Limit: limits.MaxObjectBytes}
	}
	return val, nil
}

func (c Condition) cmp() clientv3.Cmp {
	var cmp clientv3.Cmp
	if c.Exists {
		cmp = clientv3.Compare(clientv3.CreateRevision(c.Key), ">", 0)
	} else {
		cmp = clientv3.Compare(clientv3.CreateRevision(c.Key), "=", 0)
	}
	if c.Prefix {
		cmp = cmp.WithPrefix()
	}
	return cmp
}

func (c Condition) countOp() clientv3.Op {
	opts := []clientv3.OpOption{clientv3.WithCountOnly()}
	if c.Prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	return clientv3.OpGet(c.Key, opts...)
}

// Write applies w in one etcd transaction. Errors: ErrExists (create of an existing key),
// ErrNotFound (the key is gone), *ConflictError (another revision), *ConditionError,
// *TooLargeError. For a create, a failed condition is reported before ErrExists (the
// namespace is checked before the name, as in Kubernetes).
func (s *Store) Write(ctx context.Context, w Write) (*Result, error) {
	var val []byte
	if w.Object != nil {
		var err error
		if val, err = encodeForWrite(w.Key, w.Object); err != nil {
			return nil, err
		}
	}
	cmps := make([]clientv3.Cmp, 0, 1+len(w.Conditions))
	if w.Rev == 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(w.Key), "=", 0))
	} else {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(w.Key), "=", w.Rev))
	}
	for _, c := range w.Conditions {
		cmps = append(cmps, c.cmp())
	}

	var then []clientv3.Op
	if !w.DryRun {
		if w.Object != nil {
			then = append(then, clientv3.OpPut(w.Key, string(val)))
		} else {
			then = append(then, clientv3.OpDelete(w.Key))
		}
		for _, sd := range w.Sides {
			if sd.Delete {
				then = append(then, clientv3.OpDelete(sd.Key))
			} else {
				then = append(then, clientv3.OpPut(sd.Key, sd.Value))
			}
		}
	}
	probeAt := len(then)
	for _, p := range w.Probe {
		then = append(then, clientv3.OpGet(p, clientv3.WithCountOnly()))
	}
	// On failure: the key itself, then each condition, to say which check failed.
	elseOps := []clientv3.Op{clientv3.OpGet(w.Key)}
	for _, c := range w.Conditions {
		elseOps = append(elseOps, c.countOp())
	}

	resp, err := s.kv.Txn(ctx).If(cmps...).Then(then...).Else(elseOps...).Commit()
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", w.Key, err)
	}
	if !resp.Succeeded {
		return nil, w.failure(resp)
	}
	res := &Result{Revision: resp.Header.Revision, Probed: map[string]bool{}}
	for i, p := range w.Probe {
		if resp.Responses[probeAt+i].GetResponseRange().GetCount() > 0 {
			res.Probed[p] = true
		}
	}
	if w.Object != nil && !w.DryRun {
		scheme.Meta(w.Object).ResourceVersion = strconv.FormatInt(res.Revision, 10)
	}
	return res, nil
}

// failure explains a transaction whose comparisons failed, from its Else reads.
func (w Write) failure(resp *clientv3.TxnResponse) error {
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	failedCondition := func() error {
		for i, c := range w.Conditions {
			n := resp.Responses[1+i].GetResponseRange().GetCount()
			if (n > 0) != c.Exists {
				return &ConditionError{Condition: c}
			}
		}
		return nil
	}
	if w.Rev == 0 {
		if err := failedCondition(); err != nil {
			return err
		}
		return ErrExists
	}
	if len(kvs) == 0 {
		return ErrNotFound
	}
	if kvs[0].ModRevision != w.Rev {
		kv := kvs[0]
		return &ConflictError{Key: w.Key, Current: KeyValue{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision}}
	}
	if err := failedCondition(); err != nil {
		return err
	}
	// Every comparison held when read back: the state changed between the two; the caller
	// retries as after any conflict.
	kv := kvs[0]
	return &ConflictError{Key: w.Key, Current: KeyValue{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision}}
}

// ReadOptions tune a read.
type ReadOptions struct {
	// Serializable reads the local member's state without a quorum round: possibly stale,
	// which a resourceVersion of "0" ("any") allows.
	Serializable bool
}

func (o ReadOptions) opts() []clientv3.OpOption {
	if o.Serializable {
		return []clientv3.OpOption{clientv3.WithSerializable()}
	}
	return nil
}

// Get reads key into into and returns the revision etcd was at when it read (also when the
// key does not exist, with ErrNotFound).
func (s *Store) Get(ctx context.Context, key string, into scheme.Object, o ReadOptions) (int64, error) {
	resp, err := s.kv.Get(ctx, key, o.opts()...)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return resp.Header.Revision, ErrNotFound
	}
	kv := resp.Kvs[0]
	return resp.Header.Revision, Decode(kv.Value, kv.ModRevision, into)
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
// A revision etcd no longer keeps is ErrCompacted; one it has not reached, a
// *FutureRevisionError.
func (s *Store) Range(ctx context.Context, start, end string, rev, limit int64, o ReadOptions) (*Page, error) {
	opts := append(o.opts(), clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	resp, err := s.kv.Get(ctx, start, opts...)
	if err != nil {
		switch {
		case errors.Is(err, rpctypes.ErrCompacted):
			return nil, ErrCompacted
		case errors.Is(err, rpctypes.ErrFutureRev):
			cur, cerr := s.CurrentRevision(ctx)
			if cerr != nil {
				return nil, fmt.Errorf("range %s at %d: %w (current revision: %w)", start, rev, err, cerr)
			}
			return nil, &FutureRevisionError{Requested: rev, Current: cur}
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

// CurrentRevision is etcd's current revision (a quorum read).
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	resp, err := s.kv.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("current revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// PrefixEnd is the end of the range that holds every key starting with prefix.
func PrefixEnd(prefix string) string { return clientv3.GetPrefixRangeEnd(prefix) }
