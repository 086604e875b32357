package cli

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/skiff-project/skiff/internal/testenv"
)

func TestZZDebug(t *testing.T) {
	env := testenv.Start(t)
	file := writeFile(t, t.TempDir(), "web.yaml", webManifest)
	show := func(server string, stdin string, args ...string) {
		r := skiff(t, server, stdin, args...)
		fmt.Printf("$ skiff %v  (exit %d)\n%s", args, r.code, r.stdout)
		if r.stderr != "" {
			fmt.Printf("[stderr]\n%s", r.stderr)
		}
		fmt.Println()
	}
	_ = filepath.Base
	s := env.GRPCAddr
	show(s, "", "apply", "-f", file)
	show(s, "", "get", "deploy,svc")
	show(s, "", "get", "deploy,svc", "-A", "-o", "wide")
	show(s, "", "get", "deploy", "web", "-o", "yaml")
	show(s, "", "get", "svc", "-o", "json")
	show(s, "", "describe", "deploy", "web")
	show(s, "", "describe", "svc", "web")
	show(s, "", "get", "ns")
	show(s, "", "get", "nodes")
	show(s, "", "get", "events")
	show(s, "", "get", "pods", "nope", "-o", "json")
	show(s, "", "get", "pods", "x", "y")
	show(s, "", "scale", "deploy", "web", "--replicas", "2")
	show(s, "", "apply", "-f", "/nonexistent")
	show("127.0.0.1:1", "", "get", "pods")
	show("http://127.0.0.1:1", "", "get", "pods")
	show(s, "", "get", "pods", "--bogus")
	show(s, "", "bogus")
	show(s, "", "get", "pods", "--field-selector", "spec.bogus=1")
	show(s, "", "delete", "-f", file, "--grace-period=0", "--force")
	show(s, "", "get", "deploy", "Bad_Name")
	show(s, "", "--help")
}
