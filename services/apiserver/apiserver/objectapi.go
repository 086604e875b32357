package apiserver

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/patch"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// objectAPI serves skiff.meta.v1.ObjectAPI: PATCH for gRPC clients, through the same
// registry call as the REST PATCH.
type objectAPI struct {
	metav1.UnimplementedObjectAPIServer
	s *Server
}

func (o objectAPI) Patch(ctx context.Context, req *metav1.PatchRequest) (*metav1.PatchResponse, error) {
	s := o.s
	var k *scheme.Kind
	for _, kk := range s.registry.Scheme().Kinds() {
		if kk.Group == req.GetGroup() && kk.Version == req.GetVersion() && kk.Resource == req.GetResource() {
			k = kk
		}
	}
	if k == nil {
		return nil, apierrors.NewNotFound(req.GetGroup(), req.GetResource(), req.GetName())
	}
	start := time.Now()
	resp, err := o.patch(ctx, k, req)
	s.metrics.observe(k.Resource, "patch", req.GetSubresource(), statusCode(err), time.Since(start))
	if err != nil {
		return nil, apierrors.FromError(err)
	}
	return resp, nil
}

func (o objectAPI) patch(ctx context.Context, k *scheme.Kind, req *metav1.PatchRequest) (*metav1.PatchResponse, error) {
	s := o.s
	ns, name, sub := req.GetNamespace(), req.GetName(), req.GetSubresource()
	if k.Namespaced && ns == "" {
		return nil, apierrors.NewBadRequestField("metadata.namespace", "a namespace is required for "+k.Resource)
	}
	if sub != "" {
		if _, ok := k.Subresource(sub); !ok {
			return nil, apierrors.NewNotFound(k.Group, k.Resource+"/"+sub, name)
		}
	}
	if err := s.authorize(ctx, k, "patch", sub, ns, name); err != nil {
		return nil, err
	}
	dry, err := registry.ParseDryRun(registry.PatchOptionsKind, req.GetDryRun())
	if err != nil {
		return nil, err
	}
	t := patch.Type(req.GetPatchType())
	valid := false
	for _, pt := range patch.Types {
		valid = valid || pt == t
	}
	if !valid {
		return nil, registry.UnsupportedPatchType(req.GetPatchType())
	}
	validation := codec.FieldValidation(req.GetFieldValidation())
	switch validation {
	case "":
		validation = codec.FieldValidationWarn
	case codec.FieldValidationIgnore, codec.FieldValidationWarn, codec.FieldValidationStrict:
	default:
		return nil, apierrors.NewInvalid("meta.k8s.io", registry.PatchOptionsKind, "", []*metav1.StatusCause{{
			Reason: "FieldValueNotSupported", Field: "fieldValidation",
			Message: `Unsupported value: "` + string(validation) + `": supported values: "Ignore", "Strict", "Warn"`}})
	}
	out := &metav1.PatchResponse{}
	manager := req.GetFieldManager()
	if t != patch.ApplyPatch {
		manager = fieldManager(ctx, manager, "")
	}
	wopts := registry.WriteOptions{DryRun: dry, FieldManager: manager}
	var obj scheme.Object
	if sub == "scale" {
		if _, err = s.registry.PatchScale(ctx, k, ns, name, t, req.GetData(), wopts); err == nil {
			obj, err = s.registry.Get(ctx, k, ns, name, registry.GetOptions{})
		}
	} else {
		obj, err = s.registry.Patch(ctx, k, ns, name, sub, t, req.GetData(), registry.PatchOptions{WriteOptions: wopts,
			Force: req.GetForce(), FieldValidation: validation, Warn: func(w string) { out.Warnings = append(out.Warnings, w) }})
	}
	if err != nil {
		return nil, err
	}
	if out.Object, err = anypb.New(obj); err != nil {
		return nil, apierrors.NewInternal(err)
	}
	return out, nil
}
