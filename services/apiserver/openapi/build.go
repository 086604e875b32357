package openapi

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/schema"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec/kubeproto"
)

// Documents are the OpenAPI documents of the REST API in Kubernetes' form, built from the
// proto descriptors and pkg/apis/schema: definitions under Kubernetes' names
// (io.k8s.api.core.v1.Pod), x-kubernetes-group-version-kind on kinds and operations, list
// and patch extensions (x-kubernetes-list-type, -list-map-keys, -patch-merge-key,
// -patch-strategy) and Kubernetes' types for quantities, int-or-strings and times. kubectl
// reads them for client-side validation and its server-side validation check, `kubectl
// explain` and strategic merge patches; server-side apply's field sets follow the same
// schema.
type Documents struct {
	// V2JSON and V2Proto are /openapi/v2 as JSON and as the protobuf kubectl asks for.
	V2JSON  []byte
	V2Proto []byte
	// V3Index is /openapi/v3; V3 holds each group-version's document by path ("api/v1",
	// "apis/apps/v1") and V3Hash its hash (the index's serverRelativeURL carries it).
	V3Index []byte
	V3      map[string][]byte
	V3Hash  map[string]string
}

// Build builds the documents of the scheme's kinds.
func Build(s *scheme.Scheme) (*Documents, error) {
	docs := &Documents{V3: map[string][]byte{}, V3Hash: map[string]string{}}
	v2, err := json.Marshal(buildV2(s))
	if err != nil {
		return nil, fmt.Errorf("openapi v2: %w", err)
	}
	docs.V2JSON = v2
	parsed, err := openapiv2.ParseDocument(v2)
	if err != nil {
		return nil, fmt.Errorf("openapi v2 as protobuf: %w", err)
	}
	if docs.V2Proto, err = proto.Marshal(parsed); err != nil {
		return nil, fmt.Errorf("openapi v2 as protobuf: %w", err)
	}
	index := map[string]map[string]string{}
	for _, gv := range groupVersionsOf(s) {
		b, err := json.Marshal(buildV3(gv))
		if err != nil {
			return nil, fmt.Errorf("openapi v3 %s: %w", gv.path, err)
		}
		sum := sha512.Sum512(b)
		hash := strings.ToUpper(hex.EncodeToString(sum[:]))
		docs.V3[gv.path], docs.V3Hash[gv.path] = b, hash
		index[gv.path] = map[string]string{"serverRelativeURL": "/openapi/v3/" + gv.path + "?hash=" + hash}
	}
	if docs.V3Index, err = json.Marshal(map[string]any{"paths": index}); err != nil {
		return nil, err
	}
	return docs, nil
}

type gvDoc struct {
	group, version, path string
	kinds                []*scheme.Kind
}

func groupVersionsOf(s *scheme.Scheme) []gvDoc {
	var out []gvDoc
	for _, k := range s.Kinds() {
		path := "apis/" + k.Group + "/" + k.Version
		if k.Group == "" {
			path = "api/" + k.Version
		}
		found := false
		for i := range out {
			if out[i].path == path {
				out[i].kinds = append(out[i].kinds, k)
				found = true
			}
		}
		if !found {
			out = append(out, gvDoc{group: k.Group, version: k.Version, path: path, kinds: []*scheme.Kind{k}})
		}
	}
	return out
}

// obj is a JSON object of a document.
type obj = map[string]any

// definitions collects the schemas of messages reachable from the roots, by definition name.
type definitions struct {
	refPrefix string // "#/definitions/" or "#/components/schemas/"
	v3        bool
	defs      map[string]any
}

func newDefinitions(v3 bool) *definitions {
	d := &definitions{refPrefix: "#/definitions/", v3: v3, defs: map[string]any{}}
	if v3 {
		d.refPrefix = "#/components/schemas/"
	}
	quantity := obj{"type": "string", "description": "A fixed-point number with a suffix: 100m, 128Mi, 1.5."}
	if v3 {
		quantity = obj{"oneOf": []any{obj{"type": "string"}, obj{"type": "number"}},
			"description": "A fixed-point number with a suffix: 100m, 128Mi, 1.5."}
	}
	d.defs[schema.QuantityDefinition] = quantity
	d.defs[schema.IntOrStringDefinition] = obj{"type": "string", "format": "int-or-string",
		"description": "A number or a string (a port name, a percentage)."}
	d.defs[schema.TimeDefinition] = obj{"type": "string", "format": "date-time", "description": "An RFC 3339 time."}
	d.defs[schema.MicroTimeDefinition] = obj{"type": "string", "format": "date-time",
		"description": "An RFC 3339 time with microseconds."}
	d.defs[schema.FieldsV1Definition] = obj{"type": "object", "description": "A set of fields, in FieldsV1 form."}
	return d
}

func (d *definitions) ref(name string) obj { return obj{"$ref": d.refPrefix + name} }

// message adds md's schema (and those it refers to) and returns a reference to it.
func (d *definitions) message(md protoreflect.MessageDescriptor) obj {
	name := schema.DefinitionName(md)
	if _, done := d.defs[name]; done {
		return d.ref(name)
	}
	props := obj{}
	def := obj{"type": "object", "properties": props}
	if desc := kubeproto.Description(name, ""); desc != "" {
		def["description"] = desc
	}
	d.defs[name] = def
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		p := d.field(fd)
		if desc := kubeproto.Description(name, fd.JSONName()); desc != "" {
			p = cloneObj(p)
			if ref, ok := p["$ref"]; ok {
				// A reference takes no siblings in OpenAPI v2; allOf carries the description.
				delete(p, "$ref")
				p["allOf"] = []any{obj{"$ref": ref}}
			}
			p["description"] = desc
		}
		props[fd.JSONName()] = p
	}
	return d.ref(name)
}

func (d *definitions) field(fd protoreflect.FieldDescriptor) obj {
	switch {
	case fd.IsMap():
		value := d.singular(fd.MapValue())
		if schema.IsQuantityMap(fd) {
			value = d.ref(schema.QuantityDefinition)
		}
		return obj{"type": "object", "additionalProperties": value}
	case fd.IsList():
		s := obj{"type": "array", "items": d.singular(fd)}
		info := schema.List(fd)
		s["x-kubernetes-list-type"] = string(info.Type)
		if info.Type == schema.Map {
			s["x-kubernetes-list-map-keys"] = info.Keys
		}
		if info.MergeKey != "" {
			s["x-kubernetes-patch-merge-key"] = info.MergeKey
		}
		if info.Strategy != "" {
			s["x-kubernetes-patch-strategy"] = info.Strategy
		}
		return s
	}
	return d.singular(fd)
}

// singular is the schema of one value of fd (a field, list item or map value).
func (d *definitions) singular(fd protoreflect.FieldDescriptor) obj {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return d.message(fd.Message())
	case protoreflect.StringKind:
		switch {
		case schema.IsMicroTime(fd):
			return d.ref(schema.MicroTimeDefinition)
		case schema.IsTime(fd):
			return d.ref(schema.TimeDefinition)
		case schema.IsQuantity(fd):
			return d.ref(schema.QuantityDefinition)
		}
		return obj{"type": "string"}
	case protoreflect.BoolKind:
		return obj{"type": "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind, protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return obj{"type": "integer", "format": "int32"}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return obj{"type": "integer", "format": "int64"}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return obj{"type": "number", "format": "double"}
	case protoreflect.BytesKind:
		return obj{"type": "string", "format": "byte"}
	}
	return obj{"type": "string"}
}

// kinds adds the schemas of every kind and its list, with their group-version-kind and
// descriptions, and returns the definition name of each kind.
func (d *definitions) kinds(kinds []*scheme.Kind) {
	for _, k := range kinds {
		for _, m := range []struct {
			md   protoreflect.MessageDescriptor
			kind string
		}{{k.New().ProtoReflect().Descriptor(), k.Kind}, {k.NewList().ProtoReflect().Descriptor(), k.ListKind}} {
			d.message(m.md)
			def := d.defs[schema.DefinitionName(m.md)].(obj)
			def["x-kubernetes-group-version-kind"] = []any{obj{"group": k.Group, "version": k.Version, "kind": m.kind}}
			if def["description"] != nil {
				// Kubernetes' own description.
			} else if desc, ok := kindDescriptions[m.kind]; ok {
				def["description"] = desc
			} else if strings.HasSuffix(m.kind, "List") {
				def["description"] = m.kind + " is a list of " + strings.TrimSuffix(m.kind, "List") + " objects."
			}
			props := def["properties"].(obj)
			for _, f := range []struct{ name, text string }{
				{"apiVersion", "APIVersion defines the versioned schema of this representation of an object."},
				{"kind", "Kind is a string value representing the REST resource this object represents."},
				{"metadata", "Standard object's metadata."},
				{"spec", "Spec defines the desired behavior of the object."},
				{"status", "Status is the most recently observed status of the object; set by the system."},
			} {
				if p, ok := props[f.name].(obj); ok && p["description"] == nil {
					p = cloneObj(p)
					p["description"] = f.text
					if ref, ok := p["$ref"]; ok && d.v3 {
						delete(p, "$ref")
						p["allOf"] = []any{obj{"$ref": ref}}
					}
					props[f.name] = p
				}
			}
		}
	}
	// Scale (autoscaling/v1) is the scale subresource's kind.
	d.defs["io.k8s.api.autoscaling.v1.Scale"] = obj{"type": "object",
		"description": "Scale represents a scaling request for a resource.",
		"properties": obj{
			"apiVersion": obj{"type": "string"}, "kind": obj{"type": "string"},
			"metadata": d.message((&metav1.ObjectMeta{}).ProtoReflect().Descriptor()),
			"spec":     obj{"type": "object", "properties": obj{"replicas": obj{"type": "integer", "format": "int32"}}},
			"status": obj{"type": "object", "properties": obj{"replicas": obj{"type": "integer", "format": "int32"},
				"selector": obj{"type": "string"}}},
		},
		"x-kubernetes-group-version-kind": []any{obj{"group": "autoscaling", "version": "v1", "kind": "Scale"}}}
	d.defs["io.k8s.apimachinery.pkg.apis.meta.v1.Patch"] = obj{"type": "object",
		"description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}
}

func cloneObj(o obj) obj {
	out := make(obj, len(o))
	for k, v := range o {
		out[k] = v
	}
	return out
}

var kindDescriptions = map[string]string{
	"Pod":        "Pod is a collection of containers that can run on a host.",
	"Node":       "Node is a worker node in Skiff.",
	"Namespace":  "Namespace provides a scope for Names.",
	"Service":    "Service is a named abstraction of software service (for example, mysql) consisting of local port that the proxy listens on, and the selector that determines which pods will answer requests sent through the proxy.",
	"Endpoints":  "Endpoints is a collection of endpoints that implement the actual service.",
	"Event":      "Event is a report of an event somewhere in the cluster.",
	"ReplicaSet": "ReplicaSet ensures that a specified number of pod replicas are running at any given time.",
	"Deployment": "Deployment enables declarative updates for Pods and ReplicaSets.",
	"Lease":      "Lease defines a lease concept.",
}

// operation describes one REST operation of a kind.
type operation struct {
	method, action, sub string
	collection          bool
	kind                groupVersionKindDoc
	body, response      string // definition names
	query               []string
}

type groupVersionKindDoc struct{ Group, Version, Kind string }

var (
	writeQuery = []string{"dryRun", "fieldManager", "fieldValidation"}
	patchQuery = []string{"dryRun", "fieldManager", "fieldValidation", "force"}
	listQuery  = []string{"allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
		"resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch"}
)

// pathsOf lists the REST paths of kind k and their operations.
func pathsOf(k *scheme.Kind) map[string][]operation {
	base := "/api/" + k.Version
	if k.Group != "" {
		base = "/apis/" + k.Group + "/" + k.Version
	}
	coll := base + "/" + k.Resource
	if k.Namespaced {
		coll = base + "/namespaces/{namespace}/" + k.Resource
	}
	item := coll + "/{name}"
	objDef := schema.DefinitionName(k.New().ProtoReflect().Descriptor())
	listDef := schema.DefinitionName(k.NewList().ProtoReflect().Descriptor())
	gvk := groupVersionKindDoc{k.Group, k.Version, k.Kind}
	paths := map[string][]operation{
		coll: {
			{method: "get", action: "list", collection: true, kind: gvk, response: listDef, query: listQuery},
			{method: "post", action: "post", collection: true, kind: gvk, body: objDef, response: objDef, query: writeQuery},
		},
		item: {
			{method: "get", action: "get", kind: gvk, response: objDef, query: []string{"resourceVersion"}},
			{method: "put", action: "put", kind: gvk, body: objDef, response: objDef, query: writeQuery},
			{method: "patch", action: "patch", kind: gvk, body: "io.k8s.apimachinery.pkg.apis.meta.v1.Patch", response: objDef, query: patchQuery},
			{method: "delete", action: "delete", kind: gvk, response: objDef,
				query: []string{"dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy"}},
		},
	}
	if k.Namespaced {
		paths[base+"/"+k.Resource] = []operation{{method: "get", action: "list", collection: true, kind: gvk,
			response: listDef, query: listQuery}}
	}
	for _, sub := range k.AllSubresources() {
		p := item + "/" + sub.Name
		def, sgvk := objDef, gvk
		if sub.Kind != k.Kind {
			g, v := sub.Group, sub.Version
			if g == "" && v == "" {
				g, v = k.Group, k.Version
			}
			sgvk = groupVersionKindDoc{g, v, sub.Kind}
			def = kindDefinition(sgvk)
		}
		for _, verb := range sub.Verbs {
			switch verb {
			case "get":
				paths[p] = append(paths[p], operation{method: "get", action: "get", sub: sub.Name, kind: sgvk, response: def})
			case "update":
				paths[p] = append(paths[p], operation{method: "put", action: "put", sub: sub.Name, kind: sgvk, body: def,
					response: def, query: writeQuery})
			case "patch":
				paths[p] = append(paths[p], operation{method: "patch", action: "patch", sub: sub.Name, kind: sgvk,
					body: "io.k8s.apimachinery.pkg.apis.meta.v1.Patch", response: def, query: patchQuery})
			case "create":
				paths[p] = append(paths[p], operation{method: "post", action: "post", sub: sub.Name, kind: sgvk, body: def,
					response: def, query: writeQuery})
			}
		}
	}
	return paths
}

// kindDefinition names the definition of a kind outside the scheme (Binding, Scale).
func kindDefinition(gvk groupVersionKindDoc) string {
	switch {
	case gvk.Group == "autoscaling":
		return "io.k8s.api.autoscaling.v1.Scale"
	case gvk.Group == "":
		return "io.k8s.api.core.v1." + gvk.Kind
	}
	return "io.k8s.api." + strings.Split(gvk.Group, ".")[0] + "." + gvk.Version + "." + gvk.Kind
}

func operationID(op operation, k *scheme.Kind) string {
	name := op.action + strings.ToUpper(k.Group[:min(1, len(k.Group))]) + k.Version + k.Kind
	if op.sub != "" {
		name += strings.ToUpper(op.sub[:1]) + op.sub[1:]
	}
	return name
}

// buildV2 is the Swagger 2.0 document.
func buildV2(s *scheme.Scheme) obj {
	d := newDefinitions(false)
	d.kinds(s.Kinds())
	d.message(bindingDescriptor())
	paths := obj{}
	for _, k := range s.Kinds() {
		for path, ops := range pathsOf(k) {
			item := obj{}
			if strings.Contains(path, "{namespace}") || strings.Contains(path, "{name}") {
				var params []any
				if strings.Contains(path, "{name}") {
					params = append(params, obj{"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true})
				}
				if strings.Contains(path, "{namespace}") {
					params = append(params, obj{"name": "namespace", "in": "path", "required": true, "type": "string", "uniqueItems": true})
				}
				item["parameters"] = params
			}
			for _, op := range ops {
				o := obj{"operationId": operationID(op, k), "x-kubernetes-action": op.action,
					"x-kubernetes-group-version-kind": obj{"group": op.kind.Group, "version": op.kind.Version, "kind": op.kind.Kind},
					"consumes":                        consumes(op), "produces": []string{"application/json", "application/yaml"},
					"responses": obj{"200": obj{"description": "OK", "schema": d.ref(op.response)},
						"401": obj{"description": "Unauthorized"}}}
				var params []any
				if op.body != "" {
					params = append(params, obj{"name": "body", "in": "body", "required": true, "schema": d.ref(op.body)})
				}
				for _, q := range op.query {
					params = append(params, obj{"name": q, "in": "query", "type": queryType(q), "uniqueItems": true})
				}
				if params != nil {
					o["parameters"] = params
				}
				item[op.method] = o
			}
			paths[path] = item
		}
	}
	return obj{"swagger": "2.0", "info": obj{"title": "Skiff", "version": "v1.32.0"}, "paths": paths,
		"definitions": d.defs}
}

// buildV3 is the OpenAPI 3.0 document of one group-version.
func buildV3(gv gvDoc) obj {
	d := newDefinitions(true)
	d.kinds(gv.kinds)
	if gv.group == "" {
		d.message(bindingDescriptor())
	}
	paths := obj{}
	for _, k := range gv.kinds {
		for path, ops := range pathsOf(k) {
			item := obj{}
			var pathParams []any
			if strings.Contains(path, "{name}") {
				pathParams = append(pathParams, obj{"name": "name", "in": "path", "required": true, "schema": obj{"type": "string", "uniqueItems": true}})
			}
			if strings.Contains(path, "{namespace}") {
				pathParams = append(pathParams, obj{"name": "namespace", "in": "path", "required": true, "schema": obj{"type": "string", "uniqueItems": true}})
			}
			if pathParams != nil {
				item["parameters"] = pathParams
			}
			for _, op := range ops {
				content := obj{}
				for _, ct := range []string{"application/json", "application/yaml"} {
					content[ct] = obj{"schema": d.ref(op.response)}
				}
				o := obj{"operationId": operationID(op, k), "x-kubernetes-action": op.action,
					"x-kubernetes-group-version-kind": obj{"group": op.kind.Group, "version": op.kind.Version, "kind": op.kind.Kind},
					"responses": obj{"200": obj{"description": "OK", "content": content},
						"401": obj{"description": "Unauthorized"}}}
				if op.body != "" {
					bodyContent := obj{}
					for _, ct := range consumes(op) {
						bodyContent[ct] = obj{"schema": d.ref(op.body)}
					}
					o["requestBody"] = obj{"content": bodyContent, "required": true}
				}
				var params []any
				for _, q := range op.query {
					params = append(params, obj{"name": q, "in": "query", "schema": obj{"type": queryType(q), "uniqueItems": true}})
				}
				if params != nil {
					o["parameters"] = params
				}
				item[op.method] = o
			}
			paths["/"+strings.TrimPrefix(path, "/")] = item
		}
	}
	return obj{"openapi": "3.0.0", "info": obj{"title": "Skiff", "version": "v1.32.0"}, "paths": paths,
		"components": obj{"schemas": d.defs}}
}

func consumes(op operation) []string {
	if op.method == "patch" {
		return []string{"application/json-patch+json", "application/merge-patch+json",
			"application/strategic-merge-patch+json", "application/apply-patch+yaml"}
	}
	return []string{"application/json"}
}

func queryType(name string) string {
	switch name {
	case "allowWatchBookmarks", "watch", "sendInitialEvents", "orphanDependents", "force":
		return "boolean"
	case "limit", "timeoutSeconds", "gracePeriodSeconds":
		return "integer"
	}
	return "string"
}

// V3Paths lists the group-version paths of the v3 index, sorted.
func (d *Documents) V3Paths() []string {
	out := make([]string, 0, len(d.V3))
	for p := range d.V3 {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func bindingDescriptor() protoreflect.MessageDescriptor {
	return (&corev1.Binding{}).ProtoReflect().Descriptor()
}
