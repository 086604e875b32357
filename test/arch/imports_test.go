// Package arch checks rules of the code's structure that the compiler cannot.
package arch

import (
	"os/exec"
	"strings"
	"testing"
)

// etcdClient is the package that talks to etcd.
const etcdClient = "go.etcd.io/etcd/client/v3"

// mayLinkEtcd are the programs allowed to link the etcd client: the apiserver (the only
// component that talks to etcd), `skiff up` (which embeds the apiserver and etcd) and the
// stock etcd the end-to-end tests build.
var mayLinkEtcd = map[string]bool{
	"github.com/skiff-project/skiff/services/apiserver": true,
	"github.com/skiff-project/skiff/cmd/skiff":          true,
	"github.com/skiff-project/skiff/test/e2e/cmd/etcd":  true,
}

// Only the apiserver talks to etcd: every other program reads the event bus and writes
// through the API. The rule is checked on the import graph of every program in the module,
// so a new dependency that drags the etcd client into a controller fails here.
func TestOnlyTheAPIServerLinksEtcd(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps",
		"-f", `{{if eq .Name "main"}}MAIN {{.ImportPath}}{{else}}{{.ImportPath}}{{end}}`,
		"github.com/skiff-project/skiff/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	mains := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		main, ok := strings.CutPrefix(line, "MAIN ")
		if !ok || !strings.HasPrefix(main, "github.com/skiff-project/skiff/") {
			continue
		}
		mains++
		deps, err := exec.Command("go", "list", "-deps", main).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", main, err)
		}
		links := false
		for _, d := range strings.Fields(string(deps)) {
			if d == etcdClient {
				links = true
			}
		}
		if links && !mayLinkEtcd[main] {
			t.Errorf("%s links %s: only the apiserver and skiff up may talk to etcd", main, etcdClient)
		}
	}
	if mains < 2 {
		t.Fatalf("found %d programs; the check is not looking at the module", mains)
	}
}

// Libraries users import must not pull in etcd either (an informer or client in a user's
// controller has no business with it).
func TestUserPackagesDoNotImportEtcd(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/skiff-project/skiff/pkg/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "go.etcd.io/") {
			t.Errorf("a package under pkg/ depends on %s", d)
		}
	}
}
