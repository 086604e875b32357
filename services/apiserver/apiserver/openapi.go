package apiserver

import (
	"net/http"
	"strings"

	"github.com/skiff-project/skiff/services/apiserver/openapi"
)

// openAPIV2Proto is the media type kubectl asks /openapi/v2 for.
const openAPIV2Proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

// registerOpenAPI serves the OpenAPI documents: /openapi/v2 as JSON or, when the Accept
// header asks for it first, protobuf; /openapi/v3 (the index) and /openapi/v3/{api/v1,
// apis/GROUP/VERSION}, which clients fetch with the index's hash and may cache for good.
func registerOpenAPI(mux *http.ServeMux, docs *openapi.Documents) {
	mux.Handle("/openapi/v2", getOnly(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept")
		if wantsProtobuf(r.Header.Get("Accept")) {
			w.Header().Set("Content-Type", openAPIV2Proto)
			_, _ = w.Write(docs.V2Proto)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(docs.V2JSON)
	}))
	mux.Handle("/openapi/v3", getOnly(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(docs.V3Index)
	}))
	mux.Handle("/openapi/v3/{path...}", getOnly(func(w http.ResponseWriter, r *http.Request) {
		path := r.PathValue("path")
		doc, ok := docs.V3[path]
		if !ok {
			writeStatus(w, notFound())
			return
		}
		if h := r.URL.Query().Get("hash"); h != "" && h == docs.V3Hash[path] {
			// The hash names this content: clients may keep it as long as they like.
			w.Header().Set("Cache-Control", "public, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache, private")
		}
		w.Header().Set("Etag", `"`+docs.V3Hash[path]+`"`)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
}

// wantsProtobuf reports whether the first acceptable type of accept is OpenAPI's protobuf.
func wantsProtobuf(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		// Not mime.ParseMediaType: the '@' in the type is not a token character.
		mt, _, _ := strings.Cut(part, ";")
		if mt = strings.TrimSpace(mt); mt != "" {
			return mt == openAPIV2Proto
		}
	}
	return false
}
