package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

type getOptions struct {
	output        string
	selector      string
	fieldSelector string
	allNamespaces bool
	chunkSize     int64
	watch         bool
}

func newGetCommand(o *globalOptions) *cobra.Command {
	g := &getOptions{}
	cmd := &cobra.Command{
		Use:   "get KIND[,KIND...] [NAME...] | KIND/NAME...",
		Short: "Display one or many objects",
		Long: "Display objects as a table, or as YAML, JSON or names with -o.\n\n" +
			"Kinds: " + joinKinds(scheme.Default()) + ".",
		Example: "  skiff get pods\n  skiff get deployments,services -A\n  skiff get deploy web -o yaml\n  skiff get pods -l app=web -o wide",
		RunE: func(cmd *cobra.Command, args []string) error {
			switch g.output {
			case "", "wide", "json", "yaml", "name":
			default:
				return usageErrorf(cmd, "unable to match a printer suitable for the output format %q, allowed formats are: json,name,wide,yaml", g.output)
			}
			ra, err := parseResourceArgs(cmd, scheme.Default(), args)
			if err != nil {
				return err
			}
			if ra.byName && g.selector != "" {
				return usageErrorf(cmd, "name cannot be provided when a selector is specified")
			}
			if g.watch && (len(ra.targets) != 1 || len(ra.targets[0].names) > 1) {
				return usageErrorf(cmd, "watch is only supported on one kind and at most one name")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if g.watch {
				return runGetWatch(cmd.Context(), o, g, c, ra.targets[0])
			}
			return runGet(cmd.Context(), o, g, c, ra)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&g.output, "output", "o", "", "output format: yaml, json, wide or name")
	f.StringVarP(&g.selector, "selector", "l", "", "label selector to filter on, e.g. app=web,tier!=db")
	f.StringVar(&g.fieldSelector, "field-selector", "", "field selector to filter on, e.g. status.phase=Running")
	f.BoolVarP(&g.allNamespaces, "all-namespaces", "A", false, "list objects of every namespace")
	f.Int64Var(&g.chunkSize, "chunk-size", 500, "read large lists in pages of this many objects (0: one request)")
	f.BoolVarP(&g.watch, "watch", "w", false, "after listing, print each change as it happens (until interrupted)")
	return cmd
}

// kindObjects are the objects of one kind that a get found.
type kindObjects struct {
	kind *scheme.Kind
	objs []scheme.Object
}

func runGet(ctx context.Context, o *globalOptions, g *getOptions, c client.Interface, ra *resourceArgs) error {
	rep := &errorReporter{w: o.streams.ErrOut, server: o.server}
	var found []kindObjects
	total := 0
	for _, t := range ra.targets {
		objs, err := fetch(ctx, c, t, o.namespace, g, rep)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			// Items of a list may come without their type; -o json/yaml must show it.
			if obj.GetKind() == "" {
				scheme.SetTypeMeta(obj, t.kind.APIVersion(), t.kind.Kind)
			}
		}
		found = append(found, kindObjects{kind: t.kind, objs: objs})
		total += len(objs)
	}

	if err := printGetResult(o, g, ra, found, total); err != nil {
		return err
	}
	return rep.result()
}

// fetch gets the named objects of t (reporting each that fails) or lists all of them.
func fetch(ctx context.Context, c client.Interface, t resourceTarget, ns string, g *getOptions, rep *errorReporter) ([]scheme.Object, error) {
	if len(t.names) > 0 {
		var objs []scheme.Object
		for _, name := range t.names {
			obj, err := c.Get(ctx, t.kind, namespaceFor(t.kind, ns), name)
			if err != nil {
				rep.report(err)
				continue
			}
			objs = append(objs, obj)
		}
		return objs, nil
	}
	if g.allNamespaces {
		ns = ""
	}
	list, err := client.ListAll(ctx, c, t.kind, namespaceFor(t.kind, ns), client.ListOptions{
		LabelSelector: g.selector, FieldSelector: g.fieldSelector, Limit: max(g.chunkSize, 0),
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t.kind.GroupResource(), err)
	}
	return list.Items, nil
}

func printGetResult(o *globalOptions, g *getOptions, ra *resourceArgs, found []kindObjects, total int) error {
	w := o.streams.Out
	switch g.output {
	case "json", "yaml":
		var all []scheme.Object
		for _, f := range found {
			all = append(all, f.objs...)
		}
		// One object asked for by name prints as itself; anything else is a List.
		single := ra.byName && len(ra.targets) == 1 && len(ra.targets[0].names) == 1
		if single && len(all) == 0 {
			return nil // its error was reported
		}
		if g.output == "json" {
			return printJSON(w, all, single)
		}
		return printYAML(w, all, single)
	}

	if total == 0 {
		if !ra.byName {
			noResourcesFound(o.streams.ErrOut, ra, o.namespace, g.allNamespaces)
		}
		return nil
	}
	if g.output == "name" {
		for _, f := range found {
			for _, obj := range f.objs {
				fmt.Fprintln(w, objectRef(f.kind, obj.GetMetadata().GetName()))
			}
		}
		return nil
	}
	printed := 0
	for _, f := range found {
		if len(f.objs) == 0 {
			continue
		}
		if printed > 0 {
			fmt.Fprintln(w)
		}
		printed++
		opts := tableOptions{wide: g.output == "wide", withNamespace: g.allNamespaces, now: o.now()}
		if ra.multiKind {
			opts.namePrefix = kindRef(f.kind) + "/"
		}
		if err := printTable(w, f.kind, f.objs, opts); err != nil {
			return fmt.Errorf("print %s: %w", f.kind.GroupResource(), err)
		}
	}
	return nil
}

// noResourcesFound tells, on stderr so that scripts reading stdout see nothing, that a list
// came back empty; it names the namespace when only namespaced kinds were listed in one.
func noResourcesFound(w io.Writer, ra *resourceArgs, ns string, allNamespaces bool) {
	namespaced := true
	for _, t := range ra.targets {
		namespaced = namespaced && t.kind.Namespaced
	}
	if namespaced && !allNamespaces {
		fmt.Fprintf(w, "No resources found in %s namespace.\n", ns)
		return
	}
	fmt.Fprintln(w, "No resources found")
}

// joinKinds lists the resource names for help texts.
func joinKinds(s *scheme.Scheme) string { return strings.Join(s.ResourceNames(), ", ") }

// runGetWatch lists, prints, then prints every later change, like `kubectl get -w`: the watch
// starts at the list's resourceVersion, so no change between the two is missed.
func runGetWatch(ctx context.Context, o *globalOptions, g *getOptions, c client.Interface, t resourceTarget) error {
	ns := namespaceFor(t.kind, o.namespace)
	if g.allNamespaces {
		ns = ""
	}
	fieldSelector := g.fieldSelector
	if len(t.names) == 1 {
		fieldSelector = strings.Trim(fieldSelector+",metadata.name="+t.names[0], ",")
	}
	list, err := client.ListAll(ctx, c, t.kind, ns, client.ListOptions{
		LabelSelector: g.selector, FieldSelector: fieldSelector, Limit: max(g.chunkSize, 0)})
	if err != nil {
		return fmt.Errorf("list %s: %w", t.kind.GroupResource(), err)
	}
	opts := tableOptions{wide: g.output == "wide", withNamespace: g.allNamespaces, now: o.now()}
	print := func(objs []scheme.Object) error {
		for _, obj := range objs {
			if obj.GetKind() == "" {
				scheme.SetTypeMeta(obj, t.kind.APIVersion(), t.kind.Kind)
			}
		}
		switch g.output {
		case "json":
			return printJSON(o.streams.Out, objs, true)
		case "yaml":
			return printYAML(o.streams.Out, objs, true)
		case "name":
			for _, obj := range objs {
				fmt.Fprintf(o.streams.Out, "%s/%s\n", t.kind.Singular, obj.GetMetadata().GetName())
			}
			return nil
		}
		opts.now = o.now()
		err := printTable(o.streams.Out, t.kind, objs, opts)
		opts.noHeaders = true
		return err
	}
	if len(list.Items) > 0 || g.output == "" || g.output == "wide" {
		if err := print(list.Items); err != nil {
			return err
		}
	}
	return c.Watch(ctx, t.kind, ns, client.WatchOptions{LabelSelector: g.selector, FieldSelector: fieldSelector,
		ResourceVersion: list.ResourceVersion}, func(ev client.WatchEvent) error {
		return print([]scheme.Object{ev.Object})
	})
}
