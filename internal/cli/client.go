package cli

import (
	"context"
	"time"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

// timeoutClient bounds every request by --request-timeout. It wraps the client rather than
// the command so that a long apply of many objects is not cut short: only a single slow
// request is.
type timeoutClient struct {
	client.Interface
	timeout time.Duration
}

func (c *timeoutClient) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

func (c *timeoutClient) Create(ctx context.Context, obj scheme.Object, opts ...client.WriteOption) (scheme.Object, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.Interface.Create(ctx, obj, opts...)
}

func (c *timeoutClient) Get(ctx context.Context, k *scheme.Kind, ns, name string) (scheme.Object, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.Interface.Get(ctx, k, ns, name)
}

func (c *timeoutClient) List(ctx context.Context, k *scheme.Kind, ns string, opts client.ListOptions) (*client.List, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.Interface.List(ctx, k, ns, opts)
}

func (c *timeoutClient) Update(ctx context.Context, obj scheme.Object, opts ...client.WriteOption) (scheme.Object, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.Interface.Update(ctx, obj, opts...)
}

func (c *timeoutClient) UpdateStatus(ctx context.Context, obj scheme.Object, opts ...client.WriteOption) (scheme.Object, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.Interface.UpdateStatus(ctx, obj, opts...)
}

func (c *timeoutClient) Delete(ctx context.Context, k *scheme.Kind, ns, name string, opts client.DeleteOptions) (scheme.Object, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.Interface.Delete(ctx, k, ns, name, opts)
}

func (c *timeoutClient) Bind(ctx context.Context, ns, name, node string, opts ...client.WriteOption) error {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.Interface.Bind(ctx, ns, name, node, opts...)
}

func (c *timeoutClient) Patch(ctx context.Context, k *scheme.Kind, ns, name, patchType string, data []byte, opts client.PatchOptions) (scheme.Object, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return client.Patch(ctx, c.Interface, k, ns, name, patchType, data, opts)
}
