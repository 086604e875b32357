package registry

import (
	"encoding/json"

	"fmt"
	"google.golang.org/protobuf/proto"
	"time"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/fieldmanager"
)

// defaultFieldManager names writers that give no fieldManager and no user agent.
const defaultFieldManager = "unknown"

// toJSONMap is an object's JSON form as encoding/json decodes it: what patches and the field
// manager work on.
func toJSONMap(obj scheme.Object) (map[string]any, error) {
	// Built from the message when it can be: the same value as the round trip below, at a
	// fraction of its cost.
	if m, ok := fieldmanager.MessageJSON(obj.ProtoReflect()); ok {
		return m, nil
	}
	b, err := codec.Marshal(obj)
	if err != nil {
		return nil, apierrors.NewInternal(fmt.Errorf("encode %s: %w", obj.GetKind(), err))
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, apierrors.NewInternal(fmt.Errorf("decode %s: %w", obj.GetKind(), err))
	}
	return m, nil
}

// entriesOf converts stored managed fields to the field manager's entries; an entry whose
// fieldsV1 does not parse is dropped (it tracks nothing usable).
func entriesOf(md *metav1.ObjectMeta) []fieldmanager.Entry {
	var out []fieldmanager.Entry
	for _, e := range md.GetManagedFields() {
		set, err := fieldmanager.ParseFieldsV1(e.GetFieldsV1().GetRaw())
		if err != nil {
			continue
		}
		out = append(out, fieldmanager.Entry{Manager: e.GetManager(), Operation: e.GetOperation(),
			APIVersion: e.GetApiVersion(), Time: e.GetTime(), Subresource: e.GetSubresource(), Fields: set})
	}
	return out
}

func managedFieldsOf(entries []fieldmanager.Entry) []*metav1.ManagedFieldsEntry {
	out := make([]*metav1.ManagedFieldsEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, &metav1.ManagedFieldsEntry{Manager: e.Manager, Operation: e.Operation,
			ApiVersion: e.APIVersion, Time: e.Time, FieldsType: "FieldsV1", Subresource: e.Subresource,
			FieldsV1: &metav1.FieldsV1{Raw: e.Fields.MarshalFieldsV1()}})
	}
	return out
}

func (r *Registry) fieldRequest(k *scheme.Kind, manager, sub string) fieldmanager.Request {
	if manager == "" {
		manager = defaultFieldManager
	}
	return fieldmanager.Request{Manager: manager, APIVersion: k.APIVersion(), Subresource: sub,
		Time: r.now().UTC().Format(time.RFC3339), Type: k.New().ProtoReflect().Descriptor()}
}

// trackFields sets next's managed fields for a non-apply write of cur (nil on create) by
// opts.FieldManager, as Kubernetes' field manager does for updates. Managed fields the
// request sent are kept when it sent any; otherwise the stored ones are the start.
func (r *Registry) trackFields(k *scheme.Kind, cur, next scheme.Object, sub string, opts WriteOptions) error {
	if opts.managedFieldsSet {
		return nil
	}
	nmd := scheme.Meta(next)
	if len(nmd.ManagedFields) == 0 && cur != nil {
		nmd.ManagedFields = cur.GetMetadata().GetManagedFields()
	}
	if cur != nil && sameContent(cur, next) {
		return nil // nothing written, nothing to own (the common no-op update)
	}
	before := entriesOf(nmd)
	req := r.fieldRequest(k, opts.FieldManager, sub)
	if cur == nil {
		// A create reads no old object: its field set comes from the message, without the
		// JSON round trip.
		if set, ok := fieldmanager.MessageSet(next.ProtoReflect()); ok {
			if after, changed := fieldmanager.UpdateSet(nil, nil, set, before, req); changed {
				nmd.ManagedFields = managedFieldsOf(after)
			}
			return nil
		}
	}
	var old map[string]any
	if cur != nil {
		var err error
		if old, err = toJSONMap(cur); err != nil {
			return err
		}
	}
	nm, err := toJSONMap(next)
	if err != nil {
		return err
	}
	if after, changed := fieldmanager.Update(old, nm, before, req); changed {
		nmd.ManagedFields = managedFieldsOf(after)
	}
	return nil
}

// sameContent reports whether two versions of an object differ in nothing a manager owns
// (resourceVersion and managed fields aside): proto.Equal is much cheaper than the JSON walk.
func sameContent(a, b scheme.Object) bool {
	am, bm := a.GetMetadata(), b.GetMetadata()
	arv, brv := am.GetResourceVersion(), bm.GetResourceVersion()
	amf, bmf := am.GetManagedFields(), bm.GetManagedFields()
	if am != nil {
		am.ResourceVersion, am.ManagedFields = "", nil
		defer func() { am.ResourceVersion, am.ManagedFields = arv, amf }()
	}
	if bm != nil {
		bm.ResourceVersion, bm.ManagedFields = "", nil
		defer func() { bm.ResourceVersion, bm.ManagedFields = brv, bmf }()
	}
	return proto.Equal(a, b)
}
