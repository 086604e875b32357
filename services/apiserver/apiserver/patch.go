package apiserver

import (
	"context"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/patch"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// The REST operations the typed gRPC services do not carry: PATCH (JSON, merge, strategic
// merge, server-side apply) of objects and of their status and scale subresources, and GET
// and PUT of the scale and status subresources. They go through the same registry (which
// writes through its Update path), authorization and metrics as the gateway's requests.

// resolvedRoute is an API path resolved to its kind.
type resolvedRoute struct {
	kind *scheme.Kind
	apiRoute
}

// resolve finds the kind of an object path (/api/v1/namespaces/NS/pods/NAME[/SUB]).
func (s *Server) resolve(path string) (resolvedRoute, bool) {
	segments := strings.Split(strings.Trim(path, "/"), "/")
	route, ok := parseAPIRoute(segments)
	if !ok {
		return resolvedRoute{}, false
	}
	var group, version string
	if segments[0] == "api" {
		version = segments[1]
	} else {
		group, version = segments[1], segments[2]
	}
	for _, k := range s.registry.Scheme().Kinds() {
		if k.Group == group && k.Version == version && k.Resource == route.resource && k.Namespaced == (route.namespace != "") {
			return resolvedRoute{kind: k, apiRoute: route}, true
		}
	}
	return resolvedRoute{}, false
}

// extraOperation reports whether the request is one served here rather than by the gateway.
func (s *Server) extraOperation(r *http.Request) (resolvedRoute, bool) {
	route, ok := s.resolve(r.URL.Path)
	if !ok || route.name == "" {
		return route, false
	}
	switch {
	case r.Method == http.MethodPatch:
		return route, true
	case route.subresource == "scale":
		return route, true
	case route.subresource == "status" && r.Method == http.MethodGet:
		return route, true
	}
	return route, false
}

// serveExtra serves the operation extraOperation recognised.
func (s *Server) serveExtra(w http.ResponseWriter, r *http.Request, route resolvedRoute) {
	k := route.kind
	verb := strings.ToLower(r.Method)
	if verb == "put" {
		verb = "update"
	}
	start := time.Now()
	resp, err := s.extra(r, route, verb)
	code := statusCode(err)
	if err == nil && r.Method == http.MethodPatch && resp.created {
		code = http.StatusCreated
	}
	s.metrics.observe(k.Resource, verb, route.subresource, code, time.Since(start))
	if err != nil {
		se := apierrors.FromError(err)
		if se.Status.GetCode() >= 500 {
			s.log.Error("request failed", "resource", k.Resource, "verb", verb, "error", se.Status.GetMessage())
		}
		writeStatus(w, se)
		return
	}
	if resp.object != nil {
		if tr := tableRequestFrom(r.Context()); tr != nil && r.Method == http.MethodGet {
			t, err := s.toTable(resp.object, tr)
			if err != nil {
				writeStatus(w, apierrors.FromError(err))
				return
			}
			writeJSON(w, int(code), t)
			return
		}
		body, err := codec.Marshal(resp.object)
		if err != nil {
			writeStatus(w, apierrors.NewInternal(err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(code))
		_, _ = w.Write(append(body, '\n'))
		return
	}
	writeJSON(w, int(code), resp.scale)
}

type extraResponse struct {
	object  scheme.Object
	scale   *registry.Scale
	created bool
}

func (s *Server) extra(r *http.Request, route resolvedRoute, verb string) (extraResponse, error) {
	k, ns, name, sub := route.kind, route.namespace, route.name, route.subresource
	ctx := r.Context()
	if sub != "" {
		if _, ok := k.Subresource(sub); !ok {
			return extraResponse{}, notFound()
		}
	}
	if err := s.authorize(ctx, k, verb, sub, ns, name); err != nil {
		return extraResponse{}, err
	}
	q := r.URL.Query()
	dry, err := registry.ParseDryRun(optionsKindOf(r.Method), q["dryRun"])
	if err != nil {
		return extraResponse{}, err
	}
	wopts := registry.WriteOptions{DryRun: dry, FieldManager: fieldManager(ctx, q.Get("fieldManager"), r.UserAgent())}
	switch {
	case r.Method == http.MethodGet && sub == "scale":
		sc, err := s.registry.GetScale(ctx, k, ns, name)
		return extraResponse{scale: sc}, err
	case r.Method == http.MethodGet:
		obj, err := s.registry.Get(ctx, k, ns, name, registry.GetOptions{ResourceVersion: q.Get("resourceVersion")})
		return extraResponse{object: obj}, err
	case r.Method == http.MethodPut && sub == "scale":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return extraResponse{}, apierrors.NewBadRequest(err.Error())
		}
		sc, err := s.registry.UpdateScale(ctx, k, ns, name, body, wopts)
		return extraResponse{scale: sc}, err
	}
	// PATCH
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return extraResponse{}, apierrors.NewBadRequest(err.Error())
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	t := patch.Type(mediaType)
	if sub == "scale" {
		sc, err := s.registry.PatchScale(ctx, k, ns, name, t, body, wopts)
		return extraResponse{scale: sc}, err
	}
	popts := registry.PatchOptions{WriteOptions: wopts, Force: q.Get("force") == "true",
		FieldValidation: codec.FieldValidationWarn}
	if rb, ok := r.Body.(*requestBody); ok {
		popts.FieldValidation, popts.Warn = rb.validation, rb.Warn
	}
	if t == patch.ApplyPatch {
		// Apply has no default manager: Kubernetes requires one.
		popts.FieldManager = q.Get("fieldManager")
	}
	existed := true
	if t == patch.ApplyPatch {
		_, err := s.registry.Get(ctx, k, ns, name, registry.GetOptions{})
		existed = !apierrors.IsNotFound(err)
	}
	obj, err := s.registry.Patch(ctx, k, ns, name, sub, t, body, popts)
	return extraResponse{object: obj, created: !existed && err == nil}, err
}

func optionsKindOf(method string) string {
	switch method {
	case http.MethodPatch:
		return registry.PatchOptionsKind
	case http.MethodPut:
		return registry.UpdateOptionsKind
	}
	return registry.CreateOptionsKind
}

// fieldManager is the request's fieldManager, or as Kubernetes defaults it, the client's
// user agent up to its first '/' ("kubectl", "grpc-go").
func fieldManager(ctx context.Context, requested, userAgent string) string {
	if requested != "" {
		return requested
	}
	if userAgent == "" {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			for _, key := range []string{"grpcgateway-user-agent", "user-agent"} {
				if v := md.Get(key); len(v) > 0 {
					userAgent = v[0]
					break
				}
			}
		}
	}
	manager, _, _ := strings.Cut(userAgent, "/")
	if len(manager) > 128 {
		manager = manager[:128]
	}
	return strings.TrimSpace(manager)
}
