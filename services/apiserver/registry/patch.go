package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/patch"
	"github.com/skiff-project/skiff/services/apiserver/fieldmanager"
)

// PatchOptionsKind is how Kubernetes names a patch's options in errors.
const PatchOptionsKind = "PatchOptions"

// PatchOptions are the knobs of a patch.
type PatchOptions struct {
	WriteOptions
	// Force makes server-side apply take over the fields other managers own (--force-conflicts).
	Force bool
	// FieldValidation says what to do about fields the patched object does not have.
	FieldValidation codec.FieldValidation
	// Warn receives warnings about such fields under FieldValidationWarn (nil: dropped).
	Warn func(string)
}

// maxPatchAttempts bounds how often a patch that names no resourceVersion is recomputed on
// a newer object after losing a race with another writer.
const maxPatchAttempts = 16

// Patch changes an object (sub "": the object, "status": its status) by a patch of type t,
// as Kubernetes does: the patch applies to the JSON form of the current object, and the
// result is written through Update (or UpdateStatus), with their defaulting, admission,
// validation, size limit and dry run. A patch that sets no resourceVersion applies to the
// latest object: it is recomputed when another writer got in first. Server-side apply
// (patch.ApplyPatch) creates the object when it does not exist.
func (r *Registry) Patch(ctx context.Context, k *scheme.Kind, ns, name, sub string, t patch.Type, data []byte, opts PatchOptions) (scheme.Object, error) {
	if sub != "" && sub != "status" {
		return nil, apierrors.NewNotFound(k.Group, k.Resource+"/"+sub, name)
	}
	if sub == "status" && !k.HasStatus {
		return nil, apierrors.NewMethodNotSupported(k.Group, k.Resource, "patch status")
	}
	if opts.Force && t != patch.ApplyPatch {
		return nil, apierrors.NewInvalid(metaGroup, PatchOptionsKind, "", []*metav1.StatusCause{{Reason: "FieldValueForbidden",
			Field: "force", Message: "Forbidden: may not be specified for non-apply patch"}})
	}
	if t == patch.ApplyPatch {
		return r.apply(ctx, k, ns, name, sub, data, opts)
	}
	for attempt := 1; ; attempt++ {
		cur, _, err := r.latest(ctx, k, ns, name)
		if err != nil {
			return nil, err
		}
		doc, err := codec.Marshal(cur)
		if err != nil {
			return nil, apierrors.NewInternal(err)
		}
		patched, err := applyPatch(k, name, t, doc, data)
		if err != nil {
			return nil, err
		}
		obj, err := decodePatched(k, patched, opts)
		if err != nil {
			return nil, err
		}
		md := scheme.Meta(obj)
		curRV := cur.GetMetadata().GetResourceVersion()
		// A patch that sets a resourceVersion applies to that version only.
		conditional := md.ResourceVersion != "" && md.ResourceVersion != curRV
		if md.ResourceVersion == "" {
			md.ResourceVersion = curRV
		}
		var out scheme.Object
		if sub == "status" {
			out, err = r.UpdateStatus(ctx, k, ns, name, obj, opts.WriteOptions)
		} else {
			out, err = r.Update(ctx, k, ns, name, obj, opts.WriteOptions)
		}
		if apierrors.IsConflict(err) && !conditional && attempt < maxPatchAttempts && ctx.Err() == nil {
			continue
		}
		return out, err
	}
}

// applyPatch applies a JSON, merge or strategic merge patch to doc.
func applyPatch(k *scheme.Kind, name string, t patch.Type, doc, data []byte) ([]byte, error) {
	var out []byte
	var err error
	switch t {
	case patch.JSONPatch, patch.MergePatch:
		out, err = patch.ApplyJSON(t, doc, data)
	case patch.StrategicMergePatch:
		out, err = patch.StrategicMergeJSON(doc, data, k.New().ProtoReflect().Descriptor())
	default:
		return nil, UnsupportedPatchType(string(t))
	}
	if errors.Is(err, patch.ErrInvalid) {
		return nil, apierrors.NewInvalid(k.Group, k.Kind, name, []*metav1.StatusCause{{Reason: "FieldValueInvalid",
			Field: "patch", Message: err.Error()}})
	}
	if err != nil {
		return nil, apierrors.NewInternal(err)
	}
	return out, nil
}

// UnsupportedPatchType is the 415 for a patch media type Skiff does not read.
func UnsupportedPatchType(t string) error {
	types := make([]string, len(patch.Types))
	for i, pt := range patch.Types {
		types[i] = string(pt)
	}
	return apierrors.NewUnsupportedMediaType(t, types...)
}

// decodePatched decodes a patched JSON document into an object of kind k under the
// request's field validation.
func decodePatched(k *scheme.Kind, data []byte, opts PatchOptions) (scheme.Object, error) {
	obj := k.New()
	issues, err := codec.UnmarshalWithIssues(data, obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the patched object does not decode: %v", err))
	}
	if err := codec.CheckIssues(obj, issues, opts.FieldValidation, opts.Warn); err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	return obj, nil
}

// apply is server-side apply: the applied configuration (YAML or JSON) is merged into the
// live object for opts.FieldManager, conflicts with other managers' fields are refused (409)
// unless forced, and the result is written through Create or Update.
func (r *Registry) apply(ctx context.Context, k *scheme.Kind, ns, name, sub string, data []byte, opts PatchOptions) (scheme.Object, error) {
	if opts.FieldManager == "" {
		return nil, apierrors.NewInvalid(metaGroup, PatchOptionsKind, "", []*metav1.StatusCause{{Reason: "FieldValueRequired",
			Field: "fieldManager", Message: "Required value: is required for apply patch"}})
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err))
	}
	var top map[string]any
	if err := json.Unmarshal(js, &top); err != nil || top == nil {
		return nil, apierrors.NewBadRequest("the applied configuration must be an object")
	}
	if top["apiVersion"] == nil || top["kind"] == nil {
		return nil, apierrors.NewBadRequest("apiVersion and kind must be set in the applied configuration")
	}
	obj, err := decodePatched(k, js, opts)
	if err != nil {
		return nil, err
	}
	if err := r.checkTypeMeta(k, obj); err != nil {
		return nil, err
	}
	md := scheme.Meta(obj)
	if md.Name != "" && md.Name != name {
		return nil, apierrors.NewBadRequestField("metadata.name",
			fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", md.Name, name))
	}
	md.Name = name
	if err := r.checkNamespace(k, ns, md); err != nil {
		return nil, err
	}
	if len(md.ManagedFields) > 0 {
		return nil, apierrors.NewBadRequestField("metadata.managedFields", "metadata.managedFields must be nil in an applied configuration")
	}
	// The canonical JSON of the decoded configuration: quantities, numbers and names as the
	// stored object spells them, fields Skiff does not model gone.
	applied, err := toJSONMap(obj)
	if err != nil {
		return nil, err
	}
	desired := md.ResourceVersion
	delete(metaOf(applied), "resourceVersion")
	req := r.fieldRequest(k, opts.FieldManager, sub)
	wopts := opts.WriteOptions
	wopts.managedFieldsSet = true
	for attempt := 1; ; attempt++ {
		cur, _, err := r.latest(ctx, k, ns, name)
		if apierrors.IsNotFound(err) && sub == "" {
			md.ManagedFields = managedFieldsOf([]fieldmanager.Entry{{Manager: req.Manager, Operation: fieldmanager.OperationApply,
				APIVersion: req.APIVersion, Time: req.Time,
				Fields: fieldmanager.Scope(fieldmanager.ObjectSet(applied, req.Type), "")}})
			out, err := r.Create(ctx, k, ns, obj, wopts)
			if apierrors.IsAlreadyExists(err) && attempt < maxPatchAttempts {
				continue // created concurrently: apply to it
			}
			return out, err
		}
		if err != nil {
			return nil, err
		}
		live, err := toJSONMap(cur)
		if err != nil {
			return nil, err
		}
		merged, entries, err := fieldmanager.Apply(live, applied, entriesOf(cur.GetMetadata()), req, opts.Force)
		var ce *fieldmanager.ConflictError
		if errors.As(err, &ce) {
			return nil, applyConflict(k, name, ce)
		}
		if err != nil {
			return nil, apierrors.NewInternal(err)
		}
		delete(metaOf(merged), "managedFields")
		mergedJSON, err := json.Marshal(merged)
		if err != nil {
			return nil, apierrors.NewInternal(err)
		}
		next := k.New()
		if err := codec.Unmarshal(mergedJSON, next); err != nil {
			return nil, apierrors.NewInternal(fmt.Errorf("decode applied object: %w", err))
		}
		nmd := scheme.Meta(next)
		nmd.ManagedFields = managedFieldsOf(entries)
		nmd.ResourceVersion = cur.GetMetadata().GetResourceVersion()
		if desired != "" {
			nmd.ResourceVersion = desired
		}
		var out scheme.Object
		if sub == "status" {
			out, err = r.update(ctx, k, ns, name, next, "status", wopts)
		} else {
			out, err = r.update(ctx, k, ns, name, next, "", wopts)
		}
		if apierrors.IsConflict(err) && desired == "" && attempt < maxPatchAttempts && ctx.Err() == nil {
			continue
		}
		return out, err
	}
}

func metaOf(obj map[string]any) map[string]any {
	md, _ := obj["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
	}
	return md
}

// applyConflict is Kubernetes' 409 for apply conflicts: one cause per field, reason
// FieldManagerConflict, the field as a path, the message naming the manager.
func applyConflict(k *scheme.Kind, name string, ce *fieldmanager.ConflictError) error {
	se := apierrors.NewConflict(k.Group, k.Resource, name, ce.Error())
	se.Status.Message = ce.Error()
	causes := make([]*metav1.StatusCause, 0, len(ce.Conflicts))
	for _, c := range ce.Conflicts {
		causes = append(causes, &metav1.StatusCause{Reason: "FieldManagerConflict", Message: c.Describe(), Field: c.Path.String()})
	}
	if se.Status.Details == nil {
		se.Status.Details = &metav1.StatusDetails{}
	}
	se.Status.Details.Causes = causes
	return se
}
