package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

const applyV1 = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    stage: beta
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        env:
        - name: A
          value: "1"
        - name: B
          value: "2"
`

// TestApplyThreeWay: client-side apply removes what the manifest no longer has, keeps what
// others set, records the last-applied configuration; --server-side merges on the server and
// refuses to overwrite others' fields without --force-conflicts. Over gRPC and REST.
func TestApplyThreeWay(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	for _, server := range []string{env.GRPCAddr, env.HTTPURL} {
		ctx := context.Background()
		dir := t.TempDir()
		ns := "ns" + map[bool]string{true: "rest", false: "grpc"}[strings.HasPrefix(server, "http")]
		mustSkiff(t, server, "apply", "-f", writeFile(t, dir, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n"))
		wantLines(t, mustSkiff(t, server, "-n", ns, "apply", "-f", writeFile(t, dir, "v1.yaml", applyV1)).stdout, "deployment.apps/web created")
		k, _ := scheme.Default().ForName("deployments")
		// Someone else adds a label and an env variable.
		if _, err := client.Patch(ctx, env.Client, k, ns, "web", client.StrategicMergePatchType,
			[]byte(`{"metadata":{"labels":{"owner":"ops"}},"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"C","value":"3"}]}]}}}}`),
			client.PatchOptions{FieldManager: "ops"}); err != nil {
			t.Fatal(err)
		}
		wantLines(t, mustSkiff(t, server, "-n", ns, "apply", "-f", writeFile(t, dir, "same.yaml", applyV1)).stdout, "deployment.apps/web unchanged")
		v2 := strings.NewReplacer("    stage: beta\n", "", "        - name: B\n          value: \"2\"\n", "", "nginx:1.27", "nginx:1.28").Replace(applyV1)
		wantLines(t, mustSkiff(t, server, "-n", ns, "apply", "-f", writeFile(t, dir, "v2.yaml", v2)).stdout, "deployment.apps/web configured")
		got, err := env.Client.Get(ctx, k, ns, "web")
		if err != nil {
			t.Fatal(err)
		}
		labels := got.GetMetadata().GetLabels()
		if _, ok := labels["stage"]; ok || labels["owner"] != "ops" || labels["app"] != "web" {
			t.Errorf("%s: labels after the changed apply: %v", server, labels)
		}
		if !strings.Contains(got.GetMetadata().GetAnnotations()[lastAppliedAnnotation], `"image":"nginx:1.28"`) {
			t.Errorf("%s: last-applied annotation: %q", server, got.GetMetadata().GetAnnotations()[lastAppliedAnnotation])
		}
		out := mustSkiff(t, server, "-n", ns, "get", "deploy", "web", "-o",
			"yaml").stdout
		if !strings.Contains(out, "nginx:1.28") || strings.Contains(out, "name: B") || !strings.Contains(out, "name: C") ||
			!strings.Contains(out, "name: A") {
			t.Errorf("%s: env after the changed apply:\n%s", server, out)
		}
		// Server-side: the image is another manager's (client-side apply's) value.
		ssa := strings.Replace(v2, "nginx:1.28", "nginx:1.29", 1)
		r := skiff(t, server, "", "-n", ns, "apply", "--server-side", "-f", writeFile(t, dir, "ssa.yaml", ssa))
		if r.code == 0 || !strings.Contains(r.stderr, `conflict with "kubectl-client-side-apply" using apps/v1: .spec.template.spec.containers[name="web"].image`) {
			t.Errorf("%s: server-side apply over another manager's value: %d %s", server, r.code, r.stderr)
		}
		wantLines(t, mustSkiff(t, server, "-n", ns, "apply", "--server-side", "--force-conflicts", "-f", writeFile(t, dir, "ssa.yaml", ssa)).stdout,
			"deployment.apps/web serverside-applied")
		if got, _ := env.Client.Get(ctx, k, ns, "web"); !strings.Contains(fmt.Sprint(got), "nginx:1.29") {
			t.Errorf("%s: forced server-side apply did not apply: %v", server, got)
		}
	}
}
