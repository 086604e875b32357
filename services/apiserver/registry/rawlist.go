package registry

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// A list answered in wire form: the API's lists are most of an apiserver's read work, and
// decoding a thousand stored objects only to encode them again was nearly all of a list's
// cost. A list in protobuf splices each stored value into the list message as it is; a list
// in JSON encodes each object once per version and keeps the bytes. Objects are decoded
// only for a label or field selector, and those decodings are kept too.

// ListForm is the wire form ListEncoded answers with.
type ListForm int

const (
	// FormProto is the kind's list message in protobuf (the gRPC answer).
	FormProto ListForm = iota
	// FormJSON is the list's JSON, byte for byte what pkg/codec writes for it (the REST answer).
	FormJSON
)

// DefaultObjectCacheBytes bounds the cache of listed objects' encodings.
const DefaultObjectCacheBytes = 64 << 20

// ListEncoded is List answered in form: the encoded list message, the same list List returns.
func (r *Registry) ListEncoded(ctx context.Context, k *scheme.Kind, ns string, opts ListOptions, form ListForm) ([]byte, error) {
	var items [][]byte
	size := 0
	layout := layoutOf(k)
	lm, err := r.list(ctx, k, ns, opts, func(kv storage.KeyValue, filter *Filter) (bool, error) {
		c := r.cache.get(kv.Key, kv.ModRevision)
		changed := false
		if !filter.Empty() {
			if c.obj == nil {
				obj, err := decodeListed(k, kv)
				if err != nil {
					return false, err
				}
				c.obj, changed = obj, true
			}
			if !filter.Matches(c.obj) {
				if changed {
					r.cache.put(kv.Key, kv.ModRevision, c)
				}
				return false, nil
			}
		}
		var enc []byte
		switch form {
		case FormProto:
			if c.wire == nil {
				c.wire, changed = spliceItem(k, layout, kv), true
			}
			enc = c.wire
		case FormJSON:
			if c.json == nil {
				obj := c.obj
				if obj == nil {
					var err error
					if obj, err = decodeListed(k, kv); err != nil {
						return false, err
					}
				}
				b, err := codec.Marshal(obj)
				if err != nil {
					return false, apierrors.NewInternal(err)
				}
				c.json, changed = b, true
			}
			enc = c.json
		}
		if changed {
			r.cache.put(kv.Key, kv.ModRevision, c)
		}
		items = append(items, enc)
		size += len(enc) + 8
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	list := k.NewList()
	scheme.SetListItems(list, k, nil, lm)
	if form == FormJSON {
		return listJSON(list, items, size)
	}
	return listProto(list, items, size)
}

func decodeListed(k *scheme.Kind, kv storage.KeyValue) (scheme.Object, error) {
	obj := k.New()
	if err := storage.Decode(kv.Value, kv.ModRevision, obj); err != nil {
		return nil, apierrors.NewInternal(err)
	}
	scheme.SetTypeMeta(obj, k.APIVersion(), k.Kind)
	return obj, nil
}

// itemLayout holds the field numbers spliceItem writes, looked up once per list.
type itemLayout struct {
	apiVersion, kind, metadata, resourceVersion protowire.Number
}

func layoutOf(k *scheme.Kind) itemLayout {
	fields := k.New().ProtoReflect().Descriptor().Fields()
	meta := (&metav1.ObjectMeta{}).ProtoReflect().Descriptor().Fields()
	return itemLayout{apiVersion: fields.ByName("api_version").Number(), kind: fields.ByName("kind").Number(),
		metadata: fields.ByName("metadata").Number(), resourceVersion: meta.ByName("resource_version").Number()}
}

// spliceItem is the protobuf of the object stored as kv, as Decode and SetTypeMeta would
// make it: the stored value, then apiVersion and kind (a later scalar replaces an earlier
// one) and a metadata holding the resourceVersion (a later message merges into the earlier).
func spliceItem(k *scheme.Kind, l itemLayout, kv storage.KeyValue) []byte {
	var rv [24]byte
	rvText := strconv.AppendInt(rv[:0], kv.ModRevision, 10)
	out := make([]byte, 0, len(kv.Value)+len(k.APIVersion())+len(k.Kind)+len(rvText)+16)
	out = append(out, kv.Value...)
	out = protowire.AppendTag(out, l.apiVersion, protowire.BytesType)
	out = protowire.AppendString(out, k.APIVersion())
	out = protowire.AppendTag(out, l.kind, protowire.BytesType)
	out = protowire.AppendString(out, k.Kind)
	out = protowire.AppendTag(out, l.metadata, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(protowire.SizeTag(l.resourceVersion)+protowire.SizeBytes(len(rvText))))
	out = protowire.AppendTag(out, l.resourceVersion, protowire.BytesType)
	return protowire.AppendBytes(out, rvText)
}

// listProto is list (without items) in protobuf, followed by each item as a field of items.
func listProto(list proto.Message, items [][]byte, size int) ([]byte, error) {
	head, err := proto.Marshal(list)
	if err != nil {
		return nil, apierrors.NewInternal(err)
	}
	num := list.ProtoReflect().Descriptor().Fields().ByName("items").Number()
	out := make([]byte, 0, len(head)+size)
	out = append(out, head...)
	for _, it := range items {
		out = protowire.AppendTag(out, num, protowire.BytesType)
		out = protowire.AppendBytes(out, it)
	}
	return out, nil
}

// listJSON is the codec's JSON of list with items: items is the list message's last field,
// so its member goes just before the closing brace (and is left out when empty, as the codec
// leaves out an empty list).
func listJSON(list proto.Message, items [][]byte, size int) ([]byte, error) {
	head, err := codec.Marshal(list)
	if err != nil {
		return nil, apierrors.NewInternal(err)
	}
	fields := list.ProtoReflect().Descriptor().Fields()
	if len(items) == 0 {
		return head, nil
	}
	if fields.Get(fields.Len()-1).Name() != "items" || len(head) < 2 || head[len(head)-1] != '}' {
		return nil, apierrors.NewInternal(fmt.Errorf("%s: items is not the list's last field",
			list.ProtoReflect().Descriptor().FullName()))
	}
	out := make([]byte, 0, len(head)+size+16)
	out = append(out, head[:len(head)-1]...)
	if len(head) > 2 {
		out = append(out, ',')
	}
	out = append(out, `"items":[`...)
	for i, it := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, it...)
	}
	return append(out, "]}"...), nil
}

// objectCache keeps each listed object's encodings (and its decoding, when a selector needed
// it) by key and mod revision. An entry is only used for the revision it was made from, and a
// key's mod revision changes with every write of it, so an entry is never stale; it is only
// useless once its key has moved on, and the byte bound evicts it then.
type objectCache struct {
	mu      sync.Mutex
	entries map[string]cachedObject
	bytes   int
	max     int
	// hits and misses count lookups, for tests and metrics.
	hits, misses atomic.Int64
}

// cachedObject is one version of an object in the forms made so far. Its values are never
// modified once stored: a new form is stored as a new cachedObject.
type cachedObject struct {
	rev  int64
	obj  scheme.Object // read only
	wire []byte
	json []byte
	size int
}

func newObjectCache(maxBytes int) *objectCache {
	return &objectCache{entries: map[string]cachedObject{}, max: maxBytes}
}

// get returns key's entry for revision rev, or an empty one.
func (c *objectCache) get(key string, rev int64) cachedObject {
	if c == nil {
		return cachedObject{rev: rev}
	}
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && e.rev == rev {
		c.hits.Add(1)
		return e
	}
	c.misses.Add(1)
	return cachedObject{rev: rev}
}

// put stores e as key's entry, evicting others while the cache is above its bound.
func (c *objectCache) put(key string, rev int64, e cachedObject) {
	if c == nil {
		return
	}
	e.rev = rev
	e.size = len(key) + len(e.wire) + len(e.json) + 128
	if e.obj != nil {
		e.size += 3 * proto.Size(e.obj) // decoded messages take a few times their encoding
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		c.bytes -= old.size
	}
	c.entries[key] = e
	c.bytes += e.size
	for k, old := range c.entries {
		if c.bytes <= c.max {
			break
		}
		if k == key {
			continue
		}
		delete(c.entries, k)
		c.bytes -= old.size
	}
}

// forget drops key's entry (the object was deleted through this registry).
func (c *objectCache) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.entries[key]; ok {
		delete(c.entries, key)
		c.bytes -= old.size
	}
}

// ObjectCacheStats are the object cache's counters: lookups that found the version listed
// and those that did not.
func (r *Registry) ObjectCacheStats() (hits, misses int64) {
	if r.cache == nil {
		return 0, 0
	}
	return r.cache.hits.Load(), r.cache.misses.Load()
}
