package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-project/skiff/internal/testenv"
)

// --dry-run=server sends the requests with dryRun=All: the server checks them and stores
// nothing, and the CLI says so.
func TestDryRunServer(t *testing.T) {
	env := testenv.Start(t)
	server := env.GRPCAddr
	file := writeFile(t, t.TempDir(), "web.yaml", webManifest)

	r := mustSkiff(t, server, "apply", "-f", file, "--dry-run=server")
	wantLines(t, r.stdout, "deployment.apps/web created (server dry run)", "service/web created (server dry run)")
	if r := skiff(t, server, "", "get", "deployments,services", "-o", "name"); r.stdout != "service/kubernetes\n" {
		t.Fatalf("a dry-run apply stored objects:\n%s", r.stdout)
	}

	mustSkiff(t, server, "apply", "-f", file)
	r = mustSkiff(t, server, "apply", "-f", file, "--dry-run=server")
	wantLines(t, r.stdout, "deployment.apps/web unchanged (server dry run)", "service/web unchanged (server dry run)")
	writeFile(t, filepath.Dir(file), "web.yaml", strings.Replace(webManifest, "replicas: 3", "replicas: 4", 1))
	r = mustSkiff(t, server, "apply", "-f", file, "--dry-run=server")
	wantLines(t, r.stdout, "deployment.apps/web configured (server dry run)", "service/web unchanged (server dry run)")
	if r := mustSkiff(t, server, "get", "deploy", "web", "-o", "yaml"); !strings.Contains(r.stdout, "replicas: 3") {
		t.Errorf("a dry-run apply changed the deployment:\n%s", r.stdout)
	}

	r = mustSkiff(t, server, "delete", "-f", file, "--dry-run=server")
	wantLines(t, r.stdout, `deployment.apps "web" deleted (server dry run)`, `service "web" deleted (server dry run)`)
	if r := mustSkiff(t, server, "get", "deployments,services"); !strings.Contains(r.stdout, "deployment.apps/web") || !strings.Contains(r.stdout, "service/web") {
		t.Errorf("a dry-run delete deleted:\n%s", r.stdout)
	}

	for _, args := range [][]string{{"delete", "pod", "x", "--dry-run=maybe"}, {"apply", "-f", file, "--dry-run=client"}} {
		if r := skiff(t, server, "", args...); r.code == 0 {
			t.Errorf("skiff %s: exit 0; want a usage error", strings.Join(args, " "))
		}
	}
}
