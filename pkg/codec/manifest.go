package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// YAMLToJSON converts one YAML document to JSON. Empty input and comment-only documents give
// "null".
func YAMLToJSON(y []byte) ([]byte, error) {
	return yaml.YAMLToJSON(y)
}

// Manifest is one object decoded from a manifest file.
type Manifest struct {
	Object scheme.Object
	Kind   *scheme.Kind
	// Unknown lists the JSON paths of fields Skiff does not model, which were ignored.
	Unknown []string
	// Index is the 1-based number of the document the object came from, counting only
	// non-empty documents; the items of a List share their List's index.
	Index int
}

// DecodeManifests decodes every object in data, which is multi-document YAML, a JSON object
// or a stream of JSON objects. A document of kind List (or any unregistered "...List" kind)
// contributes its items. Errors name the document, e.g.
// `document 2 (Deployment "web"): spec.replicas: cannot unmarshal 1.5 into int32`.
func DecodeManifests(data []byte, s *scheme.Scheme) ([]Manifest, error) {
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	var out []Manifest
	for i, doc := range docs {
		idx := i + 1
		where := fmt.Sprintf("document %d", idx)
		top, err := topLevel(doc, where)
		if err != nil {
			return nil, err
		}
		apiVersion, kind, err := typeMeta(top)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if _, lerr := s.Lookup(apiVersion, kind); lerr != nil && strings.HasSuffix(kind, "List") {
			items, err := listItems(top)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			for j, item := range items {
				m, err := decodeObject(item, s, fmt.Sprintf("%s: items[%d]", where, j))
				if err != nil {
					return nil, err
				}
				m.Index = idx
				out = append(out, m)
			}
			continue
		}
		m, err := decodeObject(doc, s, where)
		if err != nil {
			return nil, err
		}
		m.Index = idx
		out = append(out, m)
	}
	return out, nil
}

// splitDocuments returns the non-empty documents of data as JSON.
func splitDocuments(data []byte) ([][]byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		// JSON, possibly several concatenated values as kubectl accepts. Decoding it directly
		// rather than as YAML keeps the input's exact numbers and strings. YAML flow style
		// also starts with '{', so if the first value is not JSON, try YAML; not later, as
		// the YAML parser silently ignores whatever follows a flow mapping.
		docs, jerr := splitJSON(trimmed)
		if jerr == nil {
			return docs, nil
		}
		if len(docs) == 0 {
			if ydocs, yerr := splitYAMLDocuments(data); yerr == nil {
				return ydocs, nil
			}
		}
		return nil, jerr
	}
	return splitYAMLDocuments(data)
}

func splitJSON(data []byte) ([][]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs [][]byte
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			// The documents read so far tell the caller whether this was the first.
			return docs, fmt.Errorf("document %d: invalid JSON: %w", len(docs)+1, err)
		}
		if string(raw) != "null" {
			docs = append(docs, raw)
		}
	}
}

func splitYAMLDocuments(data []byte) ([][]byte, error) {
	var docs [][]byte
	for _, y := range splitYAML(data) {
		js, err := YAMLToJSON(y)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue // empty or only comments
		}
		docs = append(docs, js)
	}
	return docs, nil
}

// splitYAML cuts data at document separators: lines that are exactly "---", optionally
// followed by spaces and a comment.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	start := 0
	for pos := 0; pos < len(data); {
		end := bytes.IndexByte(data[pos:], '\n')
		next := len(data)
		if end >= 0 {
			end += pos
			next = end + 1
		} else {
			end = len(data)
		}
		if isSeparator(data[pos:end]) {
			docs = append(docs, data[start:pos])
			start = next
		}
		pos = next
	}
	return append(docs, data[start:])
}

func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r"), []byte("---"))
	if !ok {
		return false
	}
	trimmed := bytes.TrimLeft(rest, " \t")
	// A YAML comment needs whitespace before its '#'.
	return len(trimmed) == 0 || (trimmed[0] == '#' && len(trimmed) < len(rest))
}

func firstByte(b []byte) byte {
	if b = bytes.TrimLeft(b, " \t\r\n"); len(b) > 0 {
		return b[0]
	}
	return 'n'
}

// typeMeta reads apiVersion and kind from a decoded top-level object.
func typeMeta(top map[string]json.RawMessage) (apiVersion, kind string, err error) {
	get := func(name string) (string, error) {
		raw, ok := top[name]
		if !ok || string(raw) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%s must be a string, got %s", name, jsonType(firstByte(raw)))
		}
		return s, nil
	}
	if kind, err = get("kind"); err != nil {
		return "", "", err
	}
	if kind == "" {
		return "", "", errors.New("missing kind")
	}
	if apiVersion, err = get("apiVersion"); err != nil {
		return "", "", err
	}
	if apiVersion == "" {
		return "", "", fmt.Errorf("missing apiVersion for kind %q", kind)
	}
	return apiVersion, kind, nil
}

func listItems(top map[string]json.RawMessage) ([]json.RawMessage, error) {
	raw, ok := top["items"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("items: expected an array, got %s", jsonType(firstByte(raw)))
	}
	return items, nil
}

// topLevel splits a document into its members; where names it in errors.
func topLevel(raw []byte, where string) (map[string]json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return nil, fmt.Errorf("%s: expected an object, got %s", where, jsonType(firstByte(raw)))
	}
	return top, nil
}

// decodeObject decodes one object; where ("document 2", "document 2: items[0]") starts its
// errors.
func decodeObject(raw []byte, s *scheme.Scheme, where string) (Manifest, error) {
	top, err := topLevel(raw, where)
	if err != nil {
		return Manifest{}, err
	}
	apiVersion, kind, err := typeMeta(top)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", where, err)
	}
	k, err := s.Lookup(apiVersion, kind)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", where, err)
	}
	obj := k.New()
	unknown, err := UnmarshalWithUnknown(raw, obj)
	if err != nil {
		if name := obj.GetMetadata().GetName(); name != "" {
			return Manifest{}, fmt.Errorf("%s (%s %q): %w", where, kind, name, err)
		}
		return Manifest{}, fmt.Errorf("%s (%s): %w", where, kind, err)
	}
	return Manifest{Object: obj, Kind: k, Unknown: unknown}, nil
}
