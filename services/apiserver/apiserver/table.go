package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/printers"
)

// Kubernetes' Table responses: a GET (of a list, an object or a watch) whose Accept header
// asks for application/json;as=Table;v=v1;g=meta.k8s.io (or v1beta1) first gets the kind's
// columns (pkg/printers, the same as the CLI prints) and one row per object; that is what
// `kubectl get` prints. includeObject says what each row carries: None, Metadata (the
// default: a PartialObjectMetadata) or Object.

// tableRequest is a request's Table options.
type tableRequest struct {
	apiVersion    string // meta.k8s.io/v1 or meta.k8s.io/v1beta1
	includeObject string
}

type tableKey struct{}

func tableRequestFrom(ctx context.Context) *tableRequest {
	tr, _ := ctx.Value(tableKey{}).(*tableRequest)
	return tr
}

// tableVersion returns the Table version the Accept header prefers ("v1", "v1beta1"), or ""
// when the first acceptable type is plain JSON.
func tableVersion(accept string) string {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/json" && params["as"] == "Table" && params["g"] == "meta.k8s.io" &&
			(params["v"] == "v1" || params["v"] == "v1beta1") {
			return params["v"]
		}
		if mt == "application/json" || mt == "*/*" || mt == "application/*" {
			return ""
		}
	}
	return ""
}

// withTable records a GET's Table options in its context.
func withTable(r *http.Request) *http.Request {
	if r.Method != http.MethodGet {
		return r
	}
	v := tableVersion(r.Header.Get("Accept"))
	if v == "" {
		return r
	}
	include := r.URL.Query().Get("includeObject")
	if include == "" {
		include = "Metadata"
	}
	return r.WithContext(context.WithValue(r.Context(), tableKey{}, &tableRequest{apiVersion: "meta.k8s.io/" + v, includeObject: include}))
}

type tableColumn struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Format      string `json:"format"`
	Description string `json:"description"`
	Priority    int32  `json:"priority"`
}

type tableRow struct {
	Cells  []any           `json:"cells"`
	Object json.RawMessage `json:"object,omitempty"`
}

type tableListMeta struct {
	ResourceVersion    string `json:"resourceVersion,omitempty"`
	Continue           string `json:"continue,omitempty"`
	RemainingItemCount *int64 `json:"remainingItemCount,omitempty"`
}

type table struct {
	Kind              string        `json:"kind"`
	APIVersion        string        `json:"apiVersion"`
	Metadata          tableListMeta `json:"metadata"`
	ColumnDefinitions []tableColumn `json:"columnDefinitions"`
	Rows              []tableRow    `json:"rows"`
}

// toTable converts a list or an object to a Table.
func (s *Server) toTable(m proto.Message, tr *tableRequest) (*table, error) {
	var items []scheme.Object
	var k *scheme.Kind
	t := &table{Kind: "Table", APIVersion: tr.apiVersion, Rows: []tableRow{}}
	if obj, ok := m.(scheme.Object); ok {
		var err error
		if k, err = s.registry.Scheme().ForMessage(obj); err == nil {
			items = []scheme.Object{obj}
			t.Metadata.ResourceVersion = obj.GetMetadata().GetResourceVersion()
		}
	}
	if k == nil {
		name := m.ProtoReflect().Descriptor().FullName()
		for _, kk := range s.registry.Scheme().Kinds() {
			if kk.NewList().ProtoReflect().Descriptor().FullName() == name {
				k = kk
			}
		}
		if k == nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("%s cannot be shown as a Table", name))
		}
		var lm *metav1.ListMeta
		items, lm = scheme.ListItems(m)
		t.Metadata.ResourceVersion, t.Metadata.Continue = lm.GetResourceVersion(), lm.GetContinue()
		t.Metadata.RemainingItemCount = lm.RemainingItemCount
	}
	def := printers.For(k)
	for _, c := range def.Columns {
		t.ColumnDefinitions = append(t.ColumnDefinitions, tableColumn{Name: c.Name, Type: c.Type, Format: c.Format,
			Description: c.Description, Priority: c.Priority})
	}
	now := time.Now()
	for _, obj := range items {
		cells := def.Row(obj, obj.GetMetadata().GetName(), now)
		row := tableRow{Cells: make([]any, len(cells))}
		for i, c := range cells {
			row.Cells[i] = c
		}
		switch tr.includeObject {
		case "Object":
			b, err := codec.Marshal(obj)
			if err != nil {
				return nil, apierrors.NewInternal(err)
			}
			row.Object = b
		case "Metadata":
			b, err := partialObjectMetadata(obj, tr.apiVersion)
			if err != nil {
				return nil, err
			}
			row.Object = b
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

// partialObjectMetadata is an object's metadata as a PartialObjectMetadata.
func partialObjectMetadata(obj scheme.Object, apiVersion string) ([]byte, error) {
	md, err := codec.Marshal(obj.GetMetadata())
	if err != nil {
		return nil, apierrors.NewInternal(err)
	}
	return json.Marshal(struct {
		Kind       string          `json:"kind"`
		APIVersion string          `json:"apiVersion"`
		Metadata   json.RawMessage `json:"metadata"`
	}{"PartialObjectMetadata", apiVersion, md})
}

// tableRewriter turns the gateway's answers to Table requests into Tables.
func (s *Server) tableRewriter(ctx context.Context, resp proto.Message) (any, error) {
	if raw, ok := listRewriter(ctx, resp); ok {
		return raw, nil
	}
	tr := tableRequestFrom(ctx)
	if tr == nil {
		return resp, nil
	}
	return s.toTable(resp, tr)
}
