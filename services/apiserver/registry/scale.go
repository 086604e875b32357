package registry

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/labels"
	"github.com/skiff-project/skiff/pkg/patch"
)

// Scale is autoscaling/v1 Scale, the scale subresource of deployments and replica sets
// (kubectl scale, autoscalers).
type Scale struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
	Spec       ScaleSpec       `json:"spec"`
	Status     ScaleStatus     `json:"status"`
}

// ScaleSpec is the desired number of replicas.
type ScaleSpec struct {
	Replicas int32 `json:"replicas"`
}

// ScaleStatus is the observed number of replicas and the pods' selector as a string.
type ScaleStatus struct {
	Replicas int32  `json:"replicas"`
	Selector string `json:"selector,omitempty"`
}

// replicasOf reads spec.replicas (default 1), status.replicas and the selector of a scalable
// object; ok is false for kinds without a scale subresource.
func replicasOf(obj scheme.Object) (spec, status int32, sel *metav1.LabelSelector, ok bool) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return desired(o.GetSpec().Replicas), o.GetStatus().GetReplicas(), o.GetSpec().GetSelector(), true
	case *appsv1.ReplicaSet:
		return desired(o.GetSpec().Replicas), o.GetStatus().GetReplicas(), o.GetSpec().GetSelector(), true
	}
	return 0, 0, nil, false
}

func desired(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func setReplicas(obj scheme.Object, n int32) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if o.Spec == nil {
			o.Spec = &appsv1.DeploymentSpec{}
		}
		o.Spec.Replicas = proto.Int32(n)
	case *appsv1.ReplicaSet:
		if o.Spec == nil {
			o.Spec = &appsv1.ReplicaSetSpec{}
		}
		o.Spec.Replicas = proto.Int32(n)
	}
}

// scaleOf is the Scale of obj.
func scaleOf(k *scheme.Kind, obj scheme.Object) (*Scale, error) {
	spec, status, sel, ok := replicasOf(obj)
	if !ok {
		return nil, apierrors.NewNotFound(k.Group, k.Resource+"/scale", obj.GetMetadata().GetName())
	}
	md := obj.GetMetadata()
	meta, err := codec.Marshal(&metav1.ObjectMeta{Name: md.GetName(), Namespace: md.GetNamespace(), Uid: md.GetUid(),
		ResourceVersion: md.GetResourceVersion(), CreationTimestamp: md.GetCreationTimestamp()})
	if err != nil {
		return nil, apierrors.NewInternal(err)
	}
	sc := &Scale{APIVersion: "autoscaling/v1", Kind: "Scale", Metadata: meta,
		Spec: ScaleSpec{Replicas: spec}, Status: ScaleStatus{Replicas: status}}
	if sel != nil {
		if s, err := labels.FromLabelSelector(sel); err == nil {
			sc.Status.Selector = s.String()
		}
	}
	return sc, nil
}

func (r *Registry) scalable(k *scheme.Kind) error {
	if _, ok := k.Subresource("scale"); !ok {
		return apierrors.NewNotFound(k.Group, k.Resource+"/scale", "")
	}
	return nil
}

// GetScale reads the scale subresource.
func (r *Registry) GetScale(ctx context.Context, k *scheme.Kind, ns, name string) (*Scale, error) {
	if err := r.scalable(k); err != nil {
		return nil, err
	}
	obj, err := r.Get(ctx, k, ns, name, GetOptions{})
	if err != nil {
		return nil, err
	}
	return scaleOf(k, obj)
}

// UpdateScale sets spec.replicas from a Scale (PUT .../scale). A resourceVersion in the
// Scale's metadata makes the write conditional on it, as on the object.
func (r *Registry) UpdateScale(ctx context.Context, k *scheme.Kind, ns, name string, body []byte, opts WriteOptions) (*Scale, error) {
	if err := r.scalable(k); err != nil {
		return nil, err
	}
	var in struct {
		APIVersion string             `json:"apiVersion"`
		Kind       string             `json:"kind"`
		Metadata   *metav1.ObjectMeta `json:"-"`
		RawMeta    json.RawMessage    `json:"metadata"`
		Spec       struct {
			Replicas *int32 `json:"replicas"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("decode Scale: %v", err))
	}
	if (in.Kind != "" && in.Kind != "Scale") || (in.APIVersion != "" && in.APIVersion != "autoscaling/v1") {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the body is a %s %s, but the request is for autoscaling/v1 Scale", in.APIVersion, in.Kind))
	}
	md := &metav1.ObjectMeta{}
	if len(in.RawMeta) > 0 && string(in.RawMeta) != "null" {
		if err := codec.Unmarshal(in.RawMeta, md); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decode Scale metadata: %v", err))
		}
	}
	if md.Name != "" && md.Name != name {
		return nil, apierrors.NewBadRequestField("metadata.name",
			fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", md.Name, name))
	}
	replicas := int32(0)
	if in.Spec.Replicas != nil {
		replicas = *in.Spec.Replicas
	}
	if replicas < 0 {
		return nil, apierrors.NewInvalid("autoscaling", "Scale", name, []*metav1.StatusCause{{Reason: "FieldValueInvalid",
			Field: "spec.replicas", Message: fmt.Sprintf("Invalid value: %d: must be greater than or equal to 0", replicas)}})
	}
	for attempt := 1; ; attempt++ {
		cur, _, err := r.latest(ctx, k, ns, name)
		if err != nil {
			return nil, err
		}
		next := proto.Clone(cur).(scheme.Object)
		setReplicas(next, replicas)
		nmd := next.GetMetadata()
		if md.ResourceVersion != "" {
			nmd.ResourceVersion = md.ResourceVersion
		}
		out, err := r.update(ctx, k, ns, name, next, "scale", opts)
		if apierrors.IsConflict(err) && md.ResourceVersion == "" && attempt < maxPatchAttempts && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return nil, err
		}
		return scaleOf(k, out)
	}
}

// PatchScale patches the Scale (kubectl scale sends a merge patch of spec.replicas).
func (r *Registry) PatchScale(ctx context.Context, k *scheme.Kind, ns, name string, t patch.Type, data []byte, opts WriteOptions) (*Scale, error) {
	sc, err := r.GetScale(ctx, k, ns, name)
	if err != nil {
		return nil, err
	}
	doc, err := json.Marshal(sc)
	if err != nil {
		return nil, apierrors.NewInternal(err)
	}
	var patched []byte
	switch t {
	case patch.JSONPatch, patch.MergePatch:
		patched, err = patch.ApplyJSON(t, doc, data)
	case patch.StrategicMergePatch:
		// A Scale has no lists: a strategic merge patch is a merge patch.
		patched, err = patch.ApplyJSON(patch.MergePatch, doc, data)
	default:
		return nil, UnsupportedPatchType(string(t))
	}
	if err != nil {
		return nil, apierrors.NewInvalid("autoscaling", "Scale", name, []*metav1.StatusCause{{Reason: "FieldValueInvalid",
			Field: "patch", Message: err.Error()}})
	}
	// The patched Scale carries the version it was computed from only if the patch set one.
	var probe struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(data, &probe)
	if probe.Metadata.ResourceVersion == "" {
		var m map[string]any
		if json.Unmarshal(patched, &m) == nil {
			delete(metaOf(m), "resourceVersion")
			patched, _ = json.Marshal(m)
		}
	}
	return r.UpdateScale(ctx, k, ns, name, patched, opts)
}
