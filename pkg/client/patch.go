package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Patch types, as Kubernetes names them (the Content-Type of a REST PATCH).
const (
	JSONPatchType           = "application/json-patch+json"
	MergePatchType          = "application/merge-patch+json"
	StrategicMergePatchType = "application/strategic-merge-patch+json"
	ApplyPatchType          = "application/apply-patch+yaml"
)

// PatchOptions tune a patch.
type PatchOptions struct {
	DryRun bool
	// FieldManager names the writer; server-side apply requires it.
	FieldManager string
	// Force makes server-side apply take over fields other managers own.
	Force bool
	// FieldValidation is Ignore, Warn (default) or Strict.
	FieldValidation string
	// Subresource is "", "status" or "scale".
	Subresource string
}

// Patcher patches objects: Kubernetes' PATCH with every patch type, server-side apply
// included. The REST and gRPC clients implement it.
type Patcher interface {
	Patch(ctx context.Context, k *scheme.Kind, namespace, name, patchType string, data []byte, opts PatchOptions) (scheme.Object, error)
}

// Patch patches through c, which must implement Patcher.
func Patch(ctx context.Context, c Interface, k *scheme.Kind, namespace, name, patchType string, data []byte, opts PatchOptions) (scheme.Object, error) {
	p, ok := c.(Patcher)
	if !ok {
		return nil, apierrors.NewMethodNotSupported(k.Group, k.Resource, fmt.Sprintf("patch (client %T)", c))
	}
	return p.Patch(ctx, k, namespace, name, patchType, data, opts)
}

func (c *restClient) Patch(ctx context.Context, k *scheme.Kind, ns, name, patchType string, data []byte, opts PatchOptions) (scheme.Object, error) {
	q := url.Values{}
	if opts.DryRun {
		q["dryRun"] = dryRunValues(true)
	}
	if opts.FieldManager != "" {
		q.Set("fieldManager", opts.FieldManager)
	}
	if opts.Force {
		q.Set("force", "true")
	}
	if opts.FieldValidation != "" {
		q.Set("fieldValidation", opts.FieldValidation)
	}
	path := k.Path(ns, name)
	if opts.Subresource != "" {
		path += "/" + opts.Subresource
	}
	out := k.New()
	if opts.Subresource == "scale" {
		if err := c.doRaw(ctx, http.MethodPatch, path, q, patchType, data, nil); err != nil {
			return nil, err
		}
		return c.Get(ctx, k, ns, name)
	}
	return out, c.doRaw(ctx, http.MethodPatch, path, q, patchType, data, out)
}

func (c *grpcClient) Patch(ctx context.Context, k *scheme.Kind, ns, name, patchType string, data []byte, opts PatchOptions) (scheme.Object, error) {
	req := &metav1.PatchRequest{Group: k.Group, Version: k.Version, Resource: k.Resource, Namespace: ns, Name: name,
		Subresource: opts.Subresource, PatchType: patchType, Data: data, DryRun: dryRunValues(opts.DryRun),
		FieldManager: opts.FieldManager, Force: opts.Force, FieldValidation: opts.FieldValidation}
	resp, err := metav1.NewObjectAPIClient(c.conn).Patch(ctx, req)
	if err != nil {
		return nil, apierrors.FromError(err)
	}
	msg, err := anypb.UnmarshalNew(resp.GetObject(), proto.UnmarshalOptions{})
	if err != nil {
		return nil, apierrors.NewInternal(fmt.Errorf("decode patched object: %w", err))
	}
	obj, ok := msg.(scheme.Object)
	if !ok || !strings.EqualFold(obj.GetKind(), k.Kind) {
		return nil, apierrors.NewInternal(fmt.Errorf("patch answered %T, not a %s", msg, k.Kind))
	}
	return obj, nil
}
