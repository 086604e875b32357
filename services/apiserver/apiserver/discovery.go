package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Discovery tells clients (kubectl, client-go) which groups, versions and resources the
// server has, in Kubernetes' documents, all built from the scheme:
//
//   - /version: the server's version (Kubernetes 1.32's API).
//   - /api (APIVersions), /apis (APIGroupList), /api/v1 and /apis/GROUP/VERSION
//     (APIResourceList with verbs, short names, categories and subresources).
//   - The aggregated form (apidiscovery.k8s.io v2 and v2beta1 APIGroupDiscoveryList), which
//     kubectl asks for first on /api and /apis with
//     Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList; the plain
//     documents are its fallback.

// ServedKubernetesVersion is the Kubernetes API version Skiff's API follows; kubectl warns
// when its own version is more than one minor version away.
const (
	servedMajor = "1"
	servedMinor = "32"
)

// Version is /version's answer (Kubernetes' version.Info).
type versionInfo struct {
	Major        string `json:"major"`
	Minor        string `json:"minor"`
	GitVersion   string `json:"gitVersion"`
	GitCommit    string `json:"gitCommit"`
	GitTreeState string `json:"gitTreeState"`
	BuildDate    string `json:"buildDate"`
	GoVersion    string `json:"goVersion"`
	Compiler     string `json:"compiler"`
	Platform     string `json:"platform"`
}

func serveVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, versionInfo{Major: servedMajor, Minor: servedMinor,
		GitVersion: "v" + servedMajor + "." + servedMinor + ".0-skiff", GitTreeState: "clean",
		BuildDate: "1970-01-01T00:00:00Z", GoVersion: runtime.Version(), Compiler: runtime.Compiler,
		Platform: runtime.GOOS + "/" + runtime.GOARCH})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	writeJSONAs(w, code, "application/json", v)
}

func writeJSONAs(w http.ResponseWriter, code int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// groupVersion is one served group/version and its kinds.
type groupVersion struct {
	group, version string
	kinds          []*scheme.Kind
}

func (gv groupVersion) String() string {
	if gv.group == "" {
		return gv.version
	}
	return gv.group + "/" + gv.version
}

// groupVersions lists the scheme's group/versions, the core group first, in scheme order.
func groupVersions(s *scheme.Scheme) []groupVersion {
	var out []groupVersion
	for _, k := range s.Kinds() {
		i := slices.IndexFunc(out, func(gv groupVersion) bool { return gv.group == k.Group && gv.version == k.Version })
		if i < 0 {
			out = append(out, groupVersion{group: k.Group, version: k.Version})
			i = len(out) - 1
		}
		out[i].kinds = append(out[i].kinds, k)
	}
	return out
}

type apiResource struct {
	Name               string   `json:"name"`
	SingularName       string   `json:"singularName"`
	Namespaced         bool     `json:"namespaced"`
	Group              string   `json:"group,omitempty"`
	Version            string   `json:"version,omitempty"`
	Kind               string   `json:"kind"`
	Verbs              []string `json:"verbs"`
	ShortNames         []string `json:"shortNames,omitempty"`
	Categories         []string `json:"categories,omitempty"`
	StorageVersionHash string   `json:"storageVersionHash,omitempty"`
}

type apiResourceList struct {
	Kind         string        `json:"kind"`
	APIVersion   string        `json:"apiVersion"`
	GroupVersion string        `json:"groupVersion"`
	Resources    []apiResource `json:"resources"`
}

func resourceList(gv groupVersion) apiResourceList {
	list := apiResourceList{Kind: "APIResourceList", APIVersion: "v1", GroupVersion: gv.String(), Resources: []apiResource{}}
	for _, k := range gv.kinds {
		list.Resources = append(list.Resources, apiResource{Name: k.Resource, SingularName: k.Singular,
			Namespaced: k.Namespaced, Kind: k.Kind, Verbs: k.Verbs(), ShortNames: k.ShortNames, Categories: k.Categories})
		for _, sub := range k.AllSubresources() {
			list.Resources = append(list.Resources, apiResource{Name: k.Resource + "/" + sub.Name,
				Namespaced: k.Namespaced, Group: sub.Group, Version: sub.Version, Kind: sub.Kind, Verbs: sub.Verbs})
		}
	}
	return list
}

type groupVersionForDiscovery struct {
	GroupVersion string `json:"groupVersion"`
	Version      string `json:"version"`
}

type apiGroup struct {
	Name             string                     `json:"name"`
	Versions         []groupVersionForDiscovery `json:"versions"`
	PreferredVersion groupVersionForDiscovery   `json:"preferredVersion"`
}

func apiGroups(s *scheme.Scheme) []apiGroup {
	var out []apiGroup
	for _, gv := range groupVersions(s) {
		if gv.group == "" {
			continue
		}
		v := groupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.version}
		if i := slices.IndexFunc(out, func(g apiGroup) bool { return g.Name == gv.group }); i >= 0 {
			out[i].Versions = append(out[i].Versions, v)
			continue
		}
		out = append(out, apiGroup{Name: gv.group, Versions: []groupVersionForDiscovery{v}, PreferredVersion: v})
	}
	return out
}

// Aggregated discovery (apidiscovery.k8s.io).
type groupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

type discoverySubresource struct {
	Subresource  string           `json:"subresource"`
	ResponseKind groupVersionKind `json:"responseKind"`
	Verbs        []string         `json:"verbs"`
}

type discoveryResource struct {
	Resource         string                 `json:"resource"`
	ResponseKind     groupVersionKind       `json:"responseKind"`
	Scope            string                 `json:"scope"`
	SingularResource string                 `json:"singularResource"`
	Verbs            []string               `json:"verbs"`
	ShortNames       []string               `json:"shortNames,omitempty"`
	Categories       []string               `json:"categories,omitempty"`
	Subresources     []discoverySubresource `json:"subresources,omitempty"`
}

type discoveryVersion struct {
	Version   string              `json:"version"`
	Resources []discoveryResource `json:"resources"`
	Freshness string              `json:"freshness"`
}

type discoveryGroup struct {
	Metadata struct {
		Name              string `json:"name,omitempty"`
		CreationTimestamp any    `json:"creationTimestamp"`
	} `json:"metadata"`
	Versions []discoveryVersion `json:"versions"`
}

type discoveryList struct {
	Kind       string           `json:"kind"`
	APIVersion string           `json:"apiVersion"`
	Metadata   struct{}         `json:"metadata"`
	Items      []discoveryGroup `json:"items"`
}

func aggregatedDiscovery(s *scheme.Scheme, legacy bool, apiVersion string) discoveryList {
	list := discoveryList{Kind: "APIGroupDiscoveryList", APIVersion: apiVersion, Items: []discoveryGroup{}}
	for _, gv := range groupVersions(s) {
		if (gv.group == "") != legacy {
			continue
		}
		v := discoveryVersion{Version: gv.version, Freshness: "Current", Resources: []discoveryResource{}}
		for _, k := range gv.kinds {
			scope := "Cluster"
			if k.Namespaced {
				scope = "Namespaced"
			}
			r := discoveryResource{Resource: k.Resource, ResponseKind: groupVersionKind{k.Group, k.Version, k.Kind},
				Scope: scope, SingularResource: k.Singular, Verbs: k.Verbs(), ShortNames: k.ShortNames, Categories: k.Categories}
			for _, sub := range k.AllSubresources() {
				g, ver := sub.Group, sub.Version
				if g == "" && ver == "" {
					g, ver = k.Group, k.Version
				}
				r.Subresources = append(r.Subresources, discoverySubresource{Subresource: sub.Name,
					ResponseKind: groupVersionKind{g, ver, sub.Kind}, Verbs: sub.Verbs})
			}
			v.Resources = append(v.Resources, r)
		}
		i := slices.IndexFunc(list.Items, func(g discoveryGroup) bool { return g.Metadata.Name == gv.group })
		if i < 0 {
			var g discoveryGroup
			g.Metadata.Name = gv.group
			list.Items = append(list.Items, g)
			i = len(list.Items) - 1
		}
		list.Items[i].Versions = append(list.Items[i].Versions, v)
	}
	return list
}

// aggregatedDiscoveryVersion returns the apidiscovery version the Accept header asks for
// first ("v2", "v2beta1"), or "" for the plain documents.
func aggregatedDiscoveryVersion(accept string) string {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == "application/json" && params["g"] == "apidiscovery.k8s.io" && params["as"] == "APIGroupDiscoveryList" &&
			(params["v"] == "v2" || params["v"] == "v2beta1") {
			return params["v"]
		}
		if mt == "application/json" && len(params) == 0 || mt == "*/*" {
			return ""
		}
	}
	return ""
}

// registerDiscovery adds the discovery endpoints to mux.
func (s *Server) registerDiscovery(mux *http.ServeMux) {
	sch := s.registry.Scheme()
	mux.Handle("/version", getOnly(serveVersion))
	root := func(legacy bool, plain func(w http.ResponseWriter, r *http.Request)) http.Handler {
		return getOnly(func(w http.ResponseWriter, r *http.Request) {
			if v := aggregatedDiscoveryVersion(r.Header.Get("Accept")); v != "" {
				ct := "application/json;g=apidiscovery.k8s.io;v=" + v + ";as=APIGroupDiscoveryList"
				w.Header().Set("Vary", "Accept")
				writeJSONAs(w, http.StatusOK, ct, aggregatedDiscovery(sch, legacy, "apidiscovery.k8s.io/"+v))
				return
			}
			w.Header().Set("Vary", "Accept")
			plain(w, r)
		})
	}
	mux.Handle("/api", root(true, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"kind": "APIVersions", "versions": []string{"v1"},
			"serverAddressByClientCIDRs": []map[string]string{{"clientCIDR": "0.0.0.0/0", "serverAddress": serverAddress(r)}}})
	}))
	mux.Handle("/apis", root(false, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"kind": "APIGroupList", "apiVersion": "v1", "groups": apiGroups(sch)})
	}))
	gvs := groupVersions(sch)
	for _, gv := range gvs {
		path := "/apis/" + gv.String()
		if gv.group == "" {
			path = "/api/" + gv.version
		}
		list := resourceList(gv)
		mux.Handle(path, getOnly(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, list) }))
	}
	for _, g := range apiGroups(sch) {
		group := g
		mux.Handle("/apis/"+g.Name, getOnly(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, struct {
				Kind       string `json:"kind"`
				APIVersion string `json:"apiVersion"`
				apiGroup
			}{"APIGroup", "v1", group})
		}))
	}
}

// serverAddress is the host:port the client reached.
func serverAddress(r *http.Request) string {
	if _, _, err := net.SplitHostPort(r.Host); err == nil {
		return r.Host
	}
	return r.Host + ":80"
}

// getOnly serves GET (and HEAD) with h and answers other methods with a 405 Status, as the
// API's other paths do.
func getOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			se := notFound()
			se.Status.Code, se.Status.Reason = http.StatusMethodNotAllowed, apierrors.ReasonMethodNotAllowed
			se.Status.Message = fmt.Sprintf("the server does not allow this method (%s) on the requested resource", r.Method)
			writeStatus(w, se)
			return
		}
		h(w, r)
	})
}
