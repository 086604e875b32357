// Package client is the Go client of the Skiff API, for the CLI, the controllers and users'
// own programs. One interface covers every kind of the scheme; it speaks gRPC (the default)
// or REST, and every error it returns is an *apierrors.StatusError.
package client

import (
	"context"
	"strings"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// ListOptions select and page a list.
type ListOptions struct {
	LabelSelector string
	FieldSelector string
	Limit         int64
	Continue      string
	// ResourceVersion and ResourceVersionMatch choose the state listed: "" the latest, "0"
	// any, N at least N, or exactly N with ResourceVersionMatch "Exact".
	ResourceVersion      string
	ResourceVersionMatch string
}

// DeleteOptions tune a delete (sent as Kubernetes' DeleteOptions).
type DeleteOptions struct {
	// GracePeriodSeconds overrides a bound, running pod's grace period; 0 deletes at once.
	// Other objects have no grace period.
	GracePeriodSeconds *int64
	// ResourceVersion and UID make the delete conditional (preconditions): it fails with 409
	// Conflict unless the object still has them.
	ResourceVersion string
	UID             string
	// PropagationPolicy is Orphan, Background or Foreground (for the garbage collector).
	PropagationPolicy string
	// DryRun asks what the delete would do, deleting nothing.
	DryRun bool
}

// WriteOptions tune a create, update, status update or bind.
type WriteOptions struct {
	// DryRun runs the write through defaulting, admission and validation and returns the
	// object as it would be stored, storing nothing (Kubernetes' dryRun=All).
	DryRun bool
	// FieldManager names the writer, as Kubernetes clients do.
	FieldManager string
}

// WriteOption sets a WriteOptions field.
type WriteOption func(*WriteOptions)

// DryRunAll makes a write a dry run.
func DryRunAll(o *WriteOptions) { o.DryRun = true }

// WithFieldManager names the writer.
func WithFieldManager(name string) WriteOption {
	return func(o *WriteOptions) { o.FieldManager = name }
}

func writeOptions(opts []WriteOption) WriteOptions {
	var o WriteOptions
	for _, set := range opts {
		set(&o)
	}
	return o
}

// dryRunValues is the dryRun parameter of a request.
func dryRunValues(dry bool) []string {
	if dry {
		return []string{"All"}
	}
	return nil
}

// WatchOptions select what a watch delivers.
type WatchOptions struct {
	LabelSelector   string
	FieldSelector   string
	ResourceVersion string
}

// WatchEvent is one change: Type is ADDED, MODIFIED or DELETED.
type WatchEvent struct {
	Type   string
	Object scheme.Object
}

// List is one page of a list.
type List struct {
	Items           []scheme.Object
	ResourceVersion string // the revision the list was read at
	Continue        string // the token of the next page; empty on the last page
}

// Interface is the API, generic over kinds. Objects name their namespace in metadata.
type Interface interface {
	Scheme() *scheme.Scheme
	Create(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error)
	Get(ctx context.Context, k *scheme.Kind, namespace, name string) (scheme.Object, error)
	List(ctx context.Context, k *scheme.Kind, namespace string, opts ListOptions) (*List, error)
	Update(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error)
	UpdateStatus(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error)
	Delete(ctx context.Context, k *scheme.Kind, namespace, name string, opts DeleteOptions) (scheme.Object, error)
	// Bind assigns a pod to a node (the scheduler's binding subresource).
	Bind(ctx context.Context, namespace, name, node string, opts ...WriteOption) error
	// Watch calls handle for every change after opts.ResourceVersion (with an empty one, the
	// current objects first, as ADDED) until ctx ends (nil), handle fails (its error) or the
	// server ends the watch. A resourceVersion older than the server keeps is a 410 error.
	Watch(ctx context.Context, k *scheme.Kind, namespace string, opts WatchOptions, handle func(WatchEvent) error) error
	Close() error
}

// New connects to server: an http:// or https:// URL speaks REST, anything else
// ("127.0.0.1:9090", "grpc://host:9090") speaks gRPC.
func New(server string) (Interface, error) {
	if strings.HasPrefix(server, "http://") || strings.HasPrefix(server, "https://") {
		return NewREST(server, nil), nil
	}
	return NewGRPC(strings.TrimPrefix(server, "grpc://"))
}

// ListAll follows continue tokens until the list is complete, reading pages of opts.Limit.
func ListAll(ctx context.Context, c Interface, k *scheme.Kind, namespace string, opts ListOptions) (*List, error) {
	var all List
	for {
		page, err := c.List(ctx, k, namespace, opts)
		if err != nil {
			return nil, err
		}
		all.Items = append(all.Items, page.Items...)
		if all.ResourceVersion == "" {
			all.ResourceVersion = page.ResourceVersion
		}
		if page.Continue == "" {
			return &all, nil
		}
		opts.Continue = page.Continue
	}
}

// kindOf finds an object's kind by its Go type, which cannot lie; a body whose apiVersion or
// kind disagrees is sent as it is and refused by the server.
func kindOf(s *scheme.Scheme, obj scheme.Object) (*scheme.Kind, error) {
	k, err := s.ForMessage(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	return k, nil
}
