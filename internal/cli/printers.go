package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/printers"
)

const none = "<none>"

// newTabWriter aligns columns as kubectl does (minimum width 6, padding 3).
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
}

// ---- tables ----

// The value formats shared with the apiserver's Table responses (pkg/printers).
var (
	age                 = printers.Age
	desiredReplicas     = printers.DesiredReplicas
	eventLastSeen       = printers.EventLastSeen
	formatEndpoints     = printers.FormatEndpoints
	formatLabelSelector = printers.FormatLabelSelector
	formatLabels        = printers.FormatLabels
	nodeRoles           = printers.NodeRoles
	nodeStatus          = printers.NodeStatus
	orNone              = printers.OrNone
	podStatus           = printers.PodStatus
	protocolOrTCP       = printers.ProtocolOrTCP
	serviceExternalIP   = printers.ServiceExternalIP
	servicePorts        = printers.ServicePorts
	humanDuration       = printers.HumanDuration
)

func sortedKeys[V any](m map[string]V) []string { return printers.SortedKeys(m) }

// tableOptions tune printTable.
type tableOptions struct {
	wide          bool
	withNamespace bool   // -A: a leading NAMESPACE column
	namePrefix    string // "deployment.apps/" when several kinds are printed
	noHeaders     bool   // rows only (the rows that `get -w` prints as changes arrive)
	now           time.Time
}

// printTable writes objs (all of kind k) as one aligned table, with Kubernetes' columns
// (pkg/printers) upper-cased as kubectl prints them.
func printTable(w io.Writer, k *scheme.Kind, objs []scheme.Object, opts tableOptions) error {
	t := printers.For(k)
	var headers []string
	for _, c := range t.Columns {
		if c.Priority == 0 || opts.wide {
			headers = append(headers, strings.ToUpper(c.Name))
		}
	}
	withNS := opts.withNamespace && k.Namespaced
	if withNS {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	tw := newTabWriter(w)
	if !opts.noHeaders {
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
	}
	for _, obj := range objs {
		md := obj.GetMetadata()
		row := t.Row(obj, opts.namePrefix+md.GetName(), opts.now)
		var cells []string
		for i, c := range t.Columns {
			if c.Priority == 0 || opts.wide {
				cells = append(cells, row[i])
			}
		}
		if withNS {
			cells = append([]string{md.GetNamespace()}, cells...)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// ---- structured output ----

// printJSON writes objs as JSON indented like kubectl: the object itself when single, else a
// v1 List of them.
func printJSON(w io.Writer, objs []scheme.Object, single bool) error {
	data, err := marshalOutput(objs, single)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// printYAML is printJSON converted to YAML, so both show the same Kubernetes-shaped fields.
func printYAML(w io.Writer, objs []scheme.Object, single bool) error {
	data, err := marshalOutput(objs, single)
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(data)
	if err != nil {
		return fmt.Errorf("convert output to YAML: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// outputList is kubectl's List wrapper, fields in kubectl's (alphabetical) order.
type outputList struct {
	APIVersion string            `json:"apiVersion"`
	Items      []json.RawMessage `json:"items"`
	Kind       string            `json:"kind"`
	Metadata   struct {
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

func marshalOutput(objs []scheme.Object, single bool) ([]byte, error) {
	var v any
	if single && len(objs) == 1 {
		raw, err := codec.Marshal(objs[0])
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", objs[0].GetMetadata().GetName(), err)
		}
		v = json.RawMessage(raw)
	} else {
		list := outputList{APIVersion: "v1", Kind: "List", Items: []json.RawMessage{}}
		for _, obj := range objs {
			raw, err := codec.Marshal(obj)
			if err != nil {
				return nil, fmt.Errorf("encode %s: %w", obj.GetMetadata().GetName(), err)
			}
			list.Items = append(list.Items, raw)
		}
		v = list
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "<none>" and "&" in messages stay readable
	enc.SetIndent("", "    ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode output: %w", err)
	}
	return buf.Bytes(), nil
}
