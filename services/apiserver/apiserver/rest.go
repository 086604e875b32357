package apiserver

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/skiff-project/skiff/internal/limits"
	"github.com/skiff-project/skiff/pkg/apierrors"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/codec/kubeproto"
	"github.com/skiff-project/skiff/pkg/patch"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// The REST front is the first handler of every HTTP request. It answers what the mux, the
// grpc-gateway and the codec would otherwise get wrong, before they see the request:
//
//   - Paths are taken as sent, never cleaned: an empty segment (`namespaces//pods`, a trailing
//     slash), `.` or `..` is 404, where http.ServeMux would redirect to a cleaned path that
//     names another resource. A name or namespace containing '/' or '%' (sent as %2F, %25) is
//     400, as in Kubernetes, so `pods/NAME%2Fstatus` never reaches the status subresource.
//   - Bodies are bounded by limits.MaxRequestBodyBytes: a larger Content-Length is 413 without
//     reading the body; a body of unknown length is read up to the limit, then 413.
//   - Query parameters are Kubernetes' only (the proto spellings such as label_selector are
//     dropped, as is anything the operation does not take), the first of repeated ones counts,
//     and values that can be checked syntactically are (400 naming the parameter). An empty
//     value is the same as leaving the parameter out.
//   - Writes take application/json only (415 otherwise); an empty body is 400. The body is
//     decoded by the gateway's codec with the request's fieldValidation (Ignore, Warn by
//     default, Strict), and the unknown or duplicate fields it reports under Warn come back
//     as `Warning: 299 - "unknown field \"spec.foo\""` headers.

// acceptedMediaTypes are the request body formats the REST API reads, besides Kubernetes'
// protobuf (which the front transcodes to JSON) and the patch types. YAML is not among them:
// a YAML parser is a memory risk on hostile input, and clients (kubectl, the CLI) send JSON.
var acceptedMediaTypes = []string{"application/json"}

// Warnings are bounded so that a body of many unknown fields cannot make huge headers.
const (
	maxWarningBytes      = 1 << 10
	maxTotalWarningBytes = 12 << 10
)

// restFront wraps the server's mux; see the comment above.
type restFront struct {
	next http.Handler
}

func newRESTFront(next http.Handler) http.Handler { return restFront{next: next} }

func (f restFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segments, err := pathSegments(r.URL)
	if err != nil {
		writeStatus(w, err)
		return
	}
	if r.ContentLength > limits.MaxRequestBodyBytes {
		// Not reading the body makes net/http close the connection after this answer.
		writeStatus(w, bodyTooLarge())
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, limits.MaxRequestBodyBytes)
	}
	// The mux and the gateway see the canonical path; no segment contains '/' any more.
	r.URL.Path, r.URL.RawPath = "/"+strings.Join(segments, "/"), ""

	route, ok := parseAPIRoute(segments)
	if !ok {
		f.next.ServeHTTP(w, r)
		return
	}
	if err := route.checkNames(); err != nil {
		writeStatus(w, err)
		return
	}
	op := route.operation(r.Method)
	query, validation, err := cleanQuery(op, r.URL.RawQuery)
	if err != nil {
		writeStatus(w, err)
		return
	}
	r.URL.RawQuery, r.Form = query.Encode(), nil
	if op != opCreate && op != opUpdate && op != opBind && op != opDelete && op != opPatch {
		f.next.ServeHTTP(w, r)
		return
	}
	data, err := readBody(r, op)
	if err != nil {
		writeStatus(w, err)
		return
	}
	body := &requestBody{Reader: bytes.NewReader(data), validation: validation}
	r.Body, r.ContentLength = body, int64(len(data))
	f.next.ServeHTTP(&warningWriter{ResponseWriter: w, body: body}, r)
}

func bodyTooLarge() *apierrors.StatusError {
	return apierrors.NewRequestEntityTooLarge(fmt.Sprintf("limit is %d", limits.MaxRequestBodyBytes))
}

// notFound is the 404 for a path the server does not serve.
func notFound() *apierrors.StatusError {
	se := apierrors.NewBadRequest("the server could not find the requested resource")
	se.Status.Code, se.Status.Reason = http.StatusNotFound, apierrors.ReasonNotFound
	return se
}

// pathSegments splits the path as sent into decoded segments, refusing the forms that a
// cleaning mux would turn into another path.
func pathSegments(u *url.URL) ([]string, *apierrors.StatusError) {
	escaped := u.EscapedPath()
	if !strings.HasPrefix(escaped, "/") {
		return nil, notFound()
	}
	segments := strings.Split(escaped[1:], "/")
	for i, raw := range segments {
		seg, err := url.PathUnescape(raw)
		if err != nil || seg == "" || seg == "." || seg == ".." {
			return nil, notFound()
		}
		segments[i] = seg
	}
	return segments, nil
}

// apiRoute is a REST API path: /api/v1/... or /apis/GROUP/VERSION/..., then
// [namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]], as Kubernetes' request info reads it.
type apiRoute struct {
	namespace, resource, name, subresource string
}

func parseAPIRoute(segments []string) (apiRoute, bool) {
	var rest []string
	switch {
	case len(segments) >= 3 && segments[0] == "api":
		rest = segments[2:]
	case len(segments) >= 4 && segments[0] == "apis":
		rest = segments[3:]
	default:
		return apiRoute{}, false
	}
	var route apiRoute
	// namespaces/NS/status is the namespace's own subresource, not a resource inside it.
	if rest[0] == "namespaces" && len(rest) >= 3 && rest[2] != "status" && rest[2] != "finalize" {
		route.namespace, rest = rest[1], rest[2:]
	}
	if len(rest) > 3 {
		return apiRoute{}, false
	}
	route.resource = rest[0]
	if len(rest) > 1 {
		route.name = rest[1]
	}
	if len(rest) > 2 {
		route.subresource = rest[2]
	}
	return route, true
}

// checkNames applies Kubernetes' path segment name rule to the namespace and the name.
func (r apiRoute) checkNames() *apierrors.StatusError {
	for _, n := range []struct{ what, value string }{{"Namespace", r.namespace}, {"Name", r.name}} {
		for _, c := range []string{"/", "%"} {
			if strings.Contains(n.value, c) {
				return apierrors.NewBadRequest(fmt.Sprintf("%s parameter invalid: %q: may not contain '%s'", n.what, n.value, c))
			}
		}
	}
	return nil
}

// operation is what a method on a path shape does.
type operation int

const (
	opOther operation = iota // not served: the gateway answers 404 or 405
	opList                   // and watch
	opGet
	opCreate
	opUpdate // and updateStatus
	opDelete
	opBind
	opLog   // GET pods/NAME/log, served by the kubelet proxy (kubelet_proxy.go)
	opPatch // every patch type, server-side apply included
)

func (r apiRoute) operation(method string) operation {
	switch {
	case r.name == "" && method == http.MethodGet:
		return opList
	case r.name == "" && method == http.MethodPost:
		return opCreate
	case r.name == "":
		return opOther
	case (r.subresource == "" || r.subresource == "status" || r.subresource == "scale") && method == http.MethodGet:
		return opGet
	case r.subresource == "" && method == http.MethodDelete:
		return opDelete
	case (r.subresource == "" || r.subresource == "status" || r.subresource == "scale") && method == http.MethodPut:
		return opUpdate
	case (r.subresource == "" || r.subresource == "status" || r.subresource == "scale") && method == http.MethodPatch:
		return opPatch
	case r.subresource == "binding" && method == http.MethodPost:
		return opBind
	case r.subresource == "log" && r.resource == "pods" && method == http.MethodGet:
		return opLog
	}
	return opOther
}

// parameters are the query parameters op passes on to the gateway (docs/api.md).
func (op operation) parameters() []string {
	switch op {
	case opList:
		return []string{"labelSelector", "fieldSelector", "limit", "continue", "resourceVersion",
			"resourceVersionMatch", "timeoutSeconds", "watch", "allowWatchBookmarks", "sendInitialEvents", "includeObject"}
	case opGet:
		// watch on an object path is passed on so that the watch handler refuses it rather
		// than the client getting an object where it expects a stream.
		return []string{"resourceVersion", "watch", "includeObject"}
	case opCreate, opUpdate:
		return []string{"dryRun", "fieldManager"}
	case opPatch:
		return []string{"dryRun", "fieldManager", "force"}
	case opDelete:
		return []string{"dryRun", "gracePeriodSeconds", "propagationPolicy", "orphanDependents"}
	case opBind:
		return []string{"dryRun"}
	case opLog:
		return []string{"container", "follow", "tailLines", "previous", "limitBytes"}
	}
	return nil
}

// decodesWithValidation reports whether op's body is decoded under fieldValidation.
func (op operation) decodesWithValidation() bool {
	return op == opCreate || op == opUpdate || op == opBind || op == opPatch
}

// cleanQuery keeps the parameters op takes, the first value of each (every value of the list
// parameter dryRun), checks them and returns them with the request's field validation.
func cleanQuery(op operation, raw string) (url.Values, codec.FieldValidation, *apierrors.StatusError) {
	allowed := op.parameters()
	out := url.Values{}
	validation := codec.FieldValidationWarn
	seenValidation := false
	for pair := range strings.SplitSeq(raw, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			continue // not a parameter Skiff knows, whatever it is
		}
		isValidation := key == "fieldValidation" && op.decodesWithValidation()
		if !isValidation && !slices.Contains(allowed, key) {
			continue
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, "", badParameter(key, rawValue, "must be URL-encoded correctly")
		}
		if value == "" {
			continue
		}
		if isValidation {
			if !seenValidation {
				var se *apierrors.StatusError
				if validation, se = fieldValidation(op, value); se != nil {
					return nil, "", se
				}
				seenValidation = true
			}
			continue
		}
		if key != "dryRun" && out.Has(key) {
			continue
		}
		canonical, se := checkParameter(key, value)
		if se != nil {
			return nil, "", se
		}
		out.Add(key, canonical)
	}
	return out, validation, nil
}

// fieldValidation reads the parameter; an unknown value is refused as Kubernetes refuses it,
// as invalid CreateOptions or UpdateOptions (422).
func fieldValidation(op operation, value string) (codec.FieldValidation, *apierrors.StatusError) {
	switch v := codec.FieldValidation(value); v {
	case codec.FieldValidationIgnore, codec.FieldValidationWarn, codec.FieldValidationStrict:
		return v, nil
	}
	optionsKind := registry.CreateOptionsKind
	switch op {
	case opUpdate:
		optionsKind = registry.UpdateOptionsKind
	case opPatch:
		optionsKind = registry.PatchOptionsKind
	}
	return "", apierrors.NewInvalid("meta.k8s.io", optionsKind, "", []*metav1.StatusCause{{Reason: "FieldValueNotSupported",
		Field: "fieldValidation", Message: fmt.Sprintf(`Unsupported value: %q: supported values: "Ignore", "Strict", "Warn"`, value)}})
}

// checkParameter checks one value and returns it in the form the gateway parses.
func checkParameter(key, value string) (string, *apierrors.StatusError) {
	switch key {
	case "includeObject":
		switch value {
		case "None", "Metadata", "Object":
			return value, nil
		}
		return "", unsupportedParameter(key, value, "None", "Metadata", "Object")
	case "watch", "allowWatchBookmarks", "sendInitialEvents", "orphanDependents", "force", "follow", "previous":
		switch strings.ToLower(value) {
		case "true", "1":
			return "true", nil
		case "false", "0":
			return "false", nil
		}
		return "", badParameter(key, value, "must be a boolean (true, false, 1 or 0)")
	case "limit", "timeoutSeconds", "gracePeriodSeconds", "tailLines", "limitBytes":
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return "", badParameter(key, value, "must be an integer")
		}
		if n < 0 && key != "gracePeriodSeconds" {
			return "", badParameter(key, value, "must be a non-negative integer")
		}
		return strconv.FormatInt(n, 10), nil
	case "resourceVersion":
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil || n < 0 || strings.TrimLeft(value, "0123456789") != "" {
			return "", badParameter(key, value, "must be a non-negative integer")
		}
		return strconv.FormatInt(n, 10), nil
	}
	return value, nil
}

// badParameter is the 400 for a parameter value, with the parameter as the cause's field.
func badParameter(key, value, why string) *apierrors.StatusError {
	return apierrors.NewBadRequestField(key, fmt.Sprintf("%s: Invalid value: %q: %s", key, value, why))
}

func unsupportedParameter(key, value string, supported ...string) *apierrors.StatusError {
	quoted := make([]string, len(supported))
	for i, s := range supported {
		quoted[i] = strconv.Quote(s)
	}
	return apierrors.NewBadRequestField(key, fmt.Sprintf("%s: Unsupported value: %q: supported values: %s",
		key, value, strings.Join(quoted, ", ")))
}

// readBody reads the body of a write, refusing a body above the limit (413), in a format the
// API does not read (415) or, where op needs one, an empty body (400). A delete may have no
// body; its format is checked only when it has one.
func readBody(r *http.Request, op operation) ([]byte, *apierrors.StatusError) {
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if r.Body != nil {
		if _, err := buf.ReadFrom(r.Body); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, bodyTooLarge()
			}
			return nil, apierrors.NewBadRequest(fmt.Sprintf("reading the request body: %v", err))
		}
	}
	empty := len(bytes.TrimSpace(buf.Bytes())) == 0
	if empty && op == opDelete {
		return nil, nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err == nil && mt == kubeproto.MediaType && op != opPatch {
		// kubectl's typed clients send Kubernetes' protobuf; the rest of the server reads JSON.
		js, err := kubeproto.ToJSON(buf.Bytes())
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the protobuf request body does not decode: %v", err))
		}
		r.Header.Set("Content-Type", "application/json")
		return js, nil
	}
	if op == opPatch {
		if err := checkPatchType(r.Header.Get("Content-Type")); err != nil {
			return nil, err
		}
	} else if err := checkMediaType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	if empty {
		return nil, apierrors.NewBadRequest("the request body is empty: a JSON object is required")
	}
	return buf.Bytes(), nil
}

// checkMediaType accepts JSON, with parameters (charset=utf-8), and no Content-Type at all,
// which Kubernetes also reads as JSON.
func checkMediaType(contentType string) *apierrors.StatusError {
	if strings.TrimSpace(contentType) == "" {
		return nil
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err == nil && slices.Contains(acceptedMediaTypes, mediaType) {
		return nil
	}
	return apierrors.NewUnsupportedMediaType(contentType, acceptedMediaTypes...)
}

// checkPatchType accepts the patch media types (415 otherwise).
func checkPatchType(contentType string) *apierrors.StatusError {
	mediaType, _, err := mime.ParseMediaType(contentType)
	if err == nil {
		for _, t := range patch.Types {
			if mediaType == string(t) {
				return nil
			}
		}
	}
	return apierrors.FromError(registry.UnsupportedPatchType(contentType))
}

// requestBody is a buffered request body with its decoding options; the gateway's codec
// decodes it with them (codec.BodyOptions) and records its warnings here.
type requestBody struct {
	*bytes.Reader
	validation codec.FieldValidation
	warnings   []string
	warnBytes  int
}

var _ codec.BodyOptions = (*requestBody)(nil)

func (b *requestBody) Close() error { return nil }

func (b *requestBody) FieldValidation() codec.FieldValidation { return b.validation }

// Warn keeps distinct warnings, each cut to maxWarningBytes, up to maxTotalWarningBytes; the
// rest are dropped, as Kubernetes truncates its warnings.
func (b *requestBody) Warn(text string) {
	if len(text) > maxWarningBytes {
		text = text[:maxWarningBytes] + "..."
	}
	if b.warnBytes+len(text) > maxTotalWarningBytes || slices.Contains(b.warnings, text) {
		return
	}
	b.warnings = append(b.warnings, text)
	b.warnBytes += len(text)
}

// warningWriter adds the body's warnings as Warning headers when the response starts.
type warningWriter struct {
	http.ResponseWriter
	body    *requestBody
	started bool
}

func (w *warningWriter) start() {
	if w.started {
		return
	}
	w.started = true
	for _, text := range w.body.warnings {
		// Kubernetes' form: code 299, no agent, the text quoted. QuoteToASCII keeps control
		// characters and non-ASCII from unknown field names out of the header.
		w.Header().Add("Warning", "299 - "+strconv.QuoteToASCII(text))
	}
}

func (w *warningWriter) WriteHeader(code int) {
	w.start()
	w.ResponseWriter.WriteHeader(code)
}

func (w *warningWriter) Write(p []byte) (int, error) {
	w.start()
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *warningWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
