package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
)

// restClient speaks the REST API on Kubernetes' paths with Kubernetes-shaped JSON.
type restClient struct {
	base   string
	http   *http.Client
	scheme *scheme.Scheme
}

// NewREST returns a client of the REST API at base (e.g. http://127.0.0.1:8080); a nil
// httpClient means http.DefaultClient.
func NewREST(base string, httpClient *http.Client) Interface {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &restClient{base: strings.TrimRight(base, "/"), http: httpClient, scheme: scheme.Default()}
}

func (c *restClient) Scheme() *scheme.Scheme { return c.scheme }
func (c *restClient) Close() error           { return nil }

// do sends body (if any) and decodes a 2xx answer into out; any other answer becomes the
// StatusError its Status body describes.
func (c *restClient) do(ctx context.Context, method, path string, query url.Values, body proto.Message, out proto.Message) error {
	if body == nil {
		return c.doRaw(ctx, method, path, query, "", nil, out)
	}
	b, err := codec.Marshal(body)
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("encode request: %v", err))
	}
	return c.doRaw(ctx, method, path, query, "application/json", b, out)
}

// doRaw sends body (if any) as contentType and decodes a 2xx answer into out, as do does.
func (c *restClient) doRaw(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out proto.Message) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("%s %s: %v", method, u, err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("read response of %s %s: %v", method, u, err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		st := &metav1.Status{}
		if err := codec.Unmarshal(data, st); err != nil || st.GetKind() != "Status" {
			st = &metav1.Status{ApiVersion: "v1", Kind: "Status", Status: "Failure", Code: int32(resp.StatusCode),
				Message: fmt.Sprintf("%s %s: %s: %s", method, u, resp.Status, strings.TrimSpace(string(data)))}
		}
		if st.Code == 0 {
			st.Code = int32(resp.StatusCode)
		}
		return &apierrors.StatusError{Status: st}
	}
	if out != nil {
		if err := codec.Unmarshal(data, out); err != nil {
			return apierrors.NewInternal(fmt.Errorf("decode response of %s %s: %w", method, u, err))
		}
	}
	return nil
}

func (c *restClient) kindOf(obj scheme.Object) (*scheme.Kind, error) {
	return kindOf(c.scheme, obj)
}

// writeQuery is the query of a write: Kubernetes' dryRun and fieldManager parameters.
func writeQuery(opts []WriteOption) url.Values {
	o := writeOptions(opts)
	q := url.Values{}
	if o.DryRun {
		q["dryRun"] = dryRunValues(true)
	}
	if o.FieldManager != "" {
		q.Set("fieldManager", o.FieldManager)
	}
	return q
}

func (c *restClient) Create(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error) {
	k, err := c.kindOf(obj)
	if err != nil {
		return nil, err
	}
	out := k.New()
	return out, c.do(ctx, http.MethodPost, k.Path(obj.GetMetadata().GetNamespace(), ""), writeQuery(opts), obj, out)
}

func (c *restClient) Get(ctx context.Context, k *scheme.Kind, ns, name string) (scheme.Object, error) {
	out := k.New()
	return out, c.do(ctx, http.MethodGet, k.Path(ns, name), nil, nil, out)
}

func (c *restClient) List(ctx context.Context, k *scheme.Kind, ns string, opts ListOptions) (*List, error) {
	q := url.Values{}
	if opts.LabelSelector != "" {
		q.Set("labelSelector", opts.LabelSelector)
	}
	if opts.FieldSelector != "" {
		q.Set("fieldSelector", opts.FieldSelector)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.FormatInt(opts.Limit, 10))
	}
	if opts.Continue != "" {
		q.Set("continue", opts.Continue)
	}
	if opts.ResourceVersion != "" {
		q.Set("resourceVersion", opts.ResourceVersion)
	}
	if opts.ResourceVersionMatch != "" {
		q.Set("resourceVersionMatch", opts.ResourceVersionMatch)
	}
	out := k.NewList()
	if err := c.do(ctx, http.MethodGet, k.Path(ns, ""), q, nil, out); err != nil {
		return nil, err
	}
	return toList(out), nil
}

func (c *restClient) update(ctx context.Context, obj scheme.Object, suffix string, opts []WriteOption) (scheme.Object, error) {
	k, err := c.kindOf(obj)
	if err != nil {
		return nil, err
	}
	md := obj.GetMetadata()
	out := k.New()
	return out, c.do(ctx, http.MethodPut, k.Path(md.GetNamespace(), md.GetName())+suffix, writeQuery(opts), obj, out)
}

func (c *restClient) Update(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error) {
	return c.update(ctx, obj, "", opts)
}

func (c *restClient) UpdateStatus(ctx context.Context, obj scheme.Object, opts ...WriteOption) (scheme.Object, error) {
	return c.update(ctx, obj, "/status", opts)
}

// Delete sends the options as Kubernetes clients do: a DeleteOptions body.
func (c *restClient) Delete(ctx context.Context, k *scheme.Kind, ns, name string, opts DeleteOptions) (scheme.Object, error) {
	out := k.New()
	return out, c.do(ctx, http.MethodDelete, k.Path(ns, name), nil, deleteBody(opts), out)
}

func (c *restClient) Bind(ctx context.Context, ns, name, node string, opts ...WriteOption) error {
	k, err := c.scheme.ForMessage(&corev1.Pod{})
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, k.Path(ns, name)+"/binding", writeQuery(opts), binding(ns, name, node), &metav1.Status{})
}

func (c *restClient) Watch(ctx context.Context, k *scheme.Kind, ns string, opts WatchOptions, handle func(WatchEvent) error) error {
	q := url.Values{"watch": {"true"}}
	for name, v := range map[string]string{"labelSelector": opts.LabelSelector, "fieldSelector": opts.FieldSelector,
		"resourceVersion": opts.ResourceVersion} {
		if v != "" {
			q.Set(name, v)
		}
	}
	u := c.base + k.Path(ns, "") + "?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return apierrors.NewServiceUnavailable(fmt.Sprintf("GET %s: %v", u, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		st := &metav1.Status{}
		if err := codec.Unmarshal(data, st); err != nil || st.GetKind() != "Status" {
			st = &metav1.Status{Status: "Failure", Message: strings.TrimSpace(string(data))}
		}
		st.Code = int32(resp.StatusCode)
		return &apierrors.StatusError{Status: st}
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&line); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return apierrors.NewServiceUnavailable(fmt.Sprintf("watch %s: %v", u, err))
		}
		if line.Type == "ERROR" {
			// The server ended the watch; the object is the Status saying why (410: list again).
			st := &metav1.Status{}
			if err := codec.Unmarshal(line.Object, st); err != nil {
				return apierrors.NewInternal(fmt.Errorf("decode watch ERROR event: %w", err))
			}
			return &apierrors.StatusError{Status: st}
		}
		obj := k.New()
		if err := codec.Unmarshal(line.Object, obj); err != nil {
			return apierrors.NewInternal(fmt.Errorf("decode watch event: %w", err))
		}
		if err := handle(WatchEvent{Type: line.Type, Object: obj}); err != nil {
			return err
		}
	}
}
