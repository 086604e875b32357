package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
)

// resourceTarget is one kind and the names asked for (none: all of that kind).
type resourceTarget struct {
	kind  *scheme.Kind
	names []string
}

// resourceArgs are the parsed `KIND[,KIND...] [NAME...]` or `KIND/NAME...` arguments.
type resourceArgs struct {
	targets []resourceTarget
	// multiKind is set when more than one kind was named; kubectl then prefixes names with
	// their kind ("deployment.apps/web") so that rows of different kinds can be told apart.
	multiKind bool
	// byName is set when at least one name was given (a get, not a list).
	byName bool
}

// parseResourceArgs accepts kubectl's two spellings: `deploy,svc web api` and
// `deploy/web svc/web`.
func parseResourceArgs(cmd *cobra.Command, s *scheme.Scheme, args []string) (*resourceArgs, error) {
	if len(args) == 0 {
		return nil, usageErrorf(cmd, "you must specify the type of resource, one of: %s", joinKinds(s))
	}
	out := &resourceArgs{}
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			typ, name, ok := strings.Cut(a, "/")
			if !ok || typ == "" || name == "" {
				return nil, usageErrorf(cmd, "arguments in resource/name form must have a single resource and name, got %q", a)
			}
			k, err := s.ForName(typ)
			if err != nil {
				return nil, err
			}
			if n := len(out.targets); n > 0 && out.targets[n-1].kind == k {
				out.targets[n-1].names = append(out.targets[n-1].names, name)
			} else {
				out.targets = append(out.targets, resourceTarget{kind: k, names: []string{name}})
			}
		}
		out.byName = true
	} else {
		names := args[1:]
		for _, n := range names {
			if strings.Contains(n, "/") {
				return nil, usageErrorf(cmd, "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiff get resource/<name>' instead of 'skiff get resource resource/<name>')")
			}
		}
		seen := map[*scheme.Kind]bool{}
		for _, typ := range strings.Split(args[0], ",") {
			if typ == "" {
				continue
			}
			k, err := s.ForName(typ)
			if err != nil {
				return nil, err
			}
			if !seen[k] {
				seen[k] = true
				out.targets = append(out.targets, resourceTarget{kind: k, names: names})
			}
		}
		if len(out.targets) == 0 {
			return nil, usageErrorf(cmd, "no resource type given in %q", args[0])
		}
		out.byName = len(names) > 0
	}
	kinds := map[*scheme.Kind]bool{}
	for _, t := range out.targets {
		kinds[t.kind] = true
	}
	out.multiKind = len(kinds) > 1
	return out, nil
}

// kindRef is "deployment.apps" or "service": how kubectl names a kind in messages.
func kindRef(k *scheme.Kind) string {
	if k.Group == "" {
		return k.Singular
	}
	return k.Singular + "." + k.Group
}

// objectRef is "deployment.apps/web", as apply, scale and -o name print it.
func objectRef(k *scheme.Kind, name string) string { return kindRef(k) + "/" + name }

// namespaceFor is the namespace to address kind k in: none for cluster-scoped kinds.
func namespaceFor(k *scheme.Kind, ns string) string {
	if !k.Namespaced {
		return ""
	}
	return ns
}

// retryOnConflict runs fn again when it fails with 409 Conflict (someone else wrote the object
// between our read and our write), a few times with a short growing pause.
func retryOnConflict(ctx context.Context, fn func() error) error {
	const attempts = 5
	var err error
	for i := range attempts {
		if err = fn(); !apierrors.IsConflict(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(i+1) * 20 * time.Millisecond):
		}
	}
	return err
}

// manifestSource is the content of one -f argument (or one file of a directory).
type manifestSource struct {
	name string // the file name, or "STDIN"
	data []byte
}

// readSources reads -f arguments: files, directories (their .yaml, .yml and .json files in name
// order, not recursing) and "-" for stdin.
func readSources(paths []string, stdin io.Reader) ([]manifestSource, error) {
	var out []manifestSource
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			out = append(out, manifestSource{name: "STDIN", data: data})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			if os.IsNotExist(err) {
				return nil, fmt.Errorf("the path %q does not exist", p)
			}
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		files := []string{p}
		if fi.IsDir() {
			entries, err := os.ReadDir(p) // sorted by name
			if err != nil {
				return nil, fmt.Errorf("read directory %s: %w", p, err)
			}
			files = files[:0]
			for _, e := range entries {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						files = append(files, filepath.Join(p, e.Name()))
					}
				}
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", f, err)
			}
			out = append(out, manifestSource{name: f, data: data})
		}
	}
	return out, nil
}

// manifestObject is one decoded object and where it came from.
type manifestObject struct {
	source string
	codec.Manifest
}

// loadManifests reads and decodes -f arguments. A file that does not decode is reported and
// skipped so that the objects of the other files are still processed.
func loadManifests(paths []string, stdin io.Reader, s *scheme.Scheme, rep *errorReporter) ([]manifestObject, error) {
	sources, err := readSources(paths, stdin)
	if err != nil {
		return nil, err
	}
	var out []manifestObject
	for _, src := range sources {
		ms, err := codec.DecodeManifests(src.data, s)
		if err != nil {
			rep.report(fmt.Errorf("error decoding %q: %w", src.name, err))
			continue
		}
		for _, m := range ms {
			out = append(out, manifestObject{source: src.name, Manifest: m})
		}
	}
	return out, nil
}

// setManifestNamespace puts a namespaced object in ns when its manifest names none, and
// refuses one that names a different namespace than an explicit -n, as kubectl does: applying
// into a namespace the user did not expect is worse than failing. Cluster-scoped objects
// carry no namespace.
func setManifestNamespace(k *scheme.Kind, obj scheme.Object, ns string, explicit bool) error {
	md := scheme.Meta(obj)
	if !k.Namespaced {
		md.Namespace = ""
		return nil
	}
	switch {
	case md.Namespace == "":
		md.Namespace = ns
	case explicit && md.Namespace != ns:
		return fmt.Errorf("the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation.",
			md.Namespace, ns, md.Namespace)
	}
	return nil
}
