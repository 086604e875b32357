// Package kubectl drives the real kubectl binary against a Skiff apiserver (real etcd and
// NATS, testenv) through a kubeconfig, as a user would: discovery, apply (client-side and
// server-side), get in every output format, watch, describe, scale, label, annotate, the three
// patch types, server dry runs, explain, create, delete with cascade and rollout status.
package kubectl

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/internal/testenv/kubeletsim"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
	"github.com/skiff-project/skiff/services/rs-controller/manager"
	"github.com/skiff-project/skiff/services/scheduler/scheduler"
)

// manifest is the multi-document manifest the test applies: a namespace, a deployment with
// an env fieldRef, probes on a named port and resources, and a service with a named
// targetPort.
const manifest = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
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
        ports:
        - name: http
          containerPort: 80
        env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: MODE
          value: production
        resources:
          requests:
            cpu: 100m
            memory: 64Mi
          limits:
            cpu: "1"
            memory: 128Mi
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          periodSeconds: 5
        livenessProbe:
          tcpSocket:
            port: 80
          initialDelaySeconds: 10
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
`

// kubectlEnv runs kubectl against one apiserver.
type kubectlEnv struct {
	t          *testing.T
	bin        string
	kubeconfig string
	home       string
	dir        string
}

func newKubectlEnv(t *testing.T) *kubectlEnv {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed (looked for it on PATH): the kubectl integration test needs the real binary")
	}
	env := testenv.Start(t, testenv.Options{Configure: func(c *apiserver.Config) { c.BookmarkInterval = time.Second }})
	runControlPlane(t, env)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- cluster:
    server: %s
  name: skiff
contexts:
- context:
    cluster: skiff
    user: skiff
    namespace: default
  name: skiff
current-context: skiff
users:
- name: skiff
  user: {}
`, env.HTTPURL)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	return &kubectlEnv{t: t, bin: bin, kubeconfig: kubeconfig, home: t.TempDir(), dir: dir}
}

// runControlPlane runs what a cluster runs beside the apiserver, so that rollouts progress
// and cascading deletes are carried out: the scheduler, the controllers (garbage collector
// included) and a simulated kubelet with one node that makes pods Running and Ready.
func runControlPlane(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cenv, closeEnv, err := component.Connect("kubectl-test", env.GRPCAddr, env.NATSURL, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeletsim.CreateNodes(ctx, env.Client, []string{"node-1"}, kubeletsim.NodeOptions{}); err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New(scheduler.Config{Client: cenv.Client, Informers: cenv.Informers, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	kubelet := kubeletsim.New(kubeletsim.Config{Client: env.Client, JetStream: env.JetStream(t), Nodes: []string{"node-1"},
		HeartbeatInterval: time.Second, Logger: quiet})
	controllers := manager.DefaultOptions()
	controllers.Controllers = "*,-nodelifecycle"
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{
		sched.Run, kubelet.Run, func(ctx context.Context) error { return manager.Run(ctx, cenv, controllers) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait(); cenv.Informers.Shutdown(); closeEnv() })
}

func (k *kubectlEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--request-timeout=30s"}, args...)...)
	// A fresh HOME: no discovery or OpenAPI cache from another run.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig, "HOME="+k.home)
	cmd.Dir = k.dir
	return cmd
}

// run runs kubectl and returns its stdout and stderr; failing is an error.
func (k *kubectlEnv) run(args ...string) (string, string, error) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := k.command(ctx, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// ok runs kubectl, fails the test if kubectl fails, and returns stdout.
func (k *kubectlEnv) ok(args ...string) string {
	k.t.Helper()
	out, errOut, err := k.run(args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// expectLines fails unless out has each line (whitespace-normalised).
func expectLines(t *testing.T, out string, want ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		have[strings.Join(strings.Fields(l), " ")] = true
	}
	for _, w := range want {
		if !have[strings.Join(strings.Fields(w), " ")] {
			t.Errorf("output lacks line %q:\n%s", w, out)
		}
	}
}

func TestKubectl(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the kubectl binary against a test server (tens of seconds)")
	}
	k := newKubectlEnv(t)

	t.Run("version", func(t *testing.T) {
		out := k.ok("version")
		if !strings.Contains(out, "Server Version: v1.32") {
			t.Errorf("version:\n%s", out)
		}
	})

	t.Run("api-resources", func(t *testing.T) {
		out := k.ok("api-resources")
		expectLines(t, out,
			"pods po v1 true Pod",
			"services svc v1 true Service",
			"namespaces ns v1 false Namespace",
			"nodes no v1 false Node",
			"endpoints ep v1 true Endpoints",
			"events ev v1 true Event",
			"deployments deploy apps/v1 true Deployment",
			"replicasets rs apps/v1 true ReplicaSet")
		out = k.ok("api-resources", "--categories=all", "-o", "name")
		for _, r := range []string{"pods", "services", "deployments.apps", "replicasets.apps"} {
			if !strings.Contains(out, r) {
				t.Errorf("category all lacks %s:\n%s", r, out)
			}
		}
	})

	t.Run("apply", func(t *testing.T) {
		expectLines(t, k.ok("apply", "-f", "app.yaml"),
			"namespace/shop created", "deployment.apps/web created", "service/web created")
		expectLines(t, k.ok("apply", "-f", "app.yaml"),
			"namespace/shop unchanged", "deployment.apps/web unchanged", "service/web unchanged")
		changed := strings.NewReplacer("nginx:1.27", "nginx:1.28", "value: production", "value: staging").Replace(manifest)
		if err := os.WriteFile(filepath.Join(k.dir, "app2.yaml"), []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		expectLines(t, k.ok("apply", "-f", "app2.yaml"),
			"namespace/shop unchanged", "deployment.apps/web configured", "service/web unchanged")
		got := k.ok("get", "deploy", "web", "-n", "shop", "-o",
			`jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath} {.spec.template.spec.containers[0].env[1].value} {.spec.template.spec.containers[0].readinessProbe.httpGet.port}`)
		if got != "nginx:1.28 metadata.name staging http" {
			t.Errorf("after the changed apply: %q", got)
		}
		if tp := k.ok("get", "svc", "web", "-n", "shop", "-o", "jsonpath={.spec.ports[0].targetPort}"); tp != "http" {
			t.Errorf("service targetPort %q, want the name http", tp)
		}
	})

	t.Run("get", func(t *testing.T) {
		y := k.ok("get", "deploy", "web", "-n", "shop", "-o", "yaml")
		for _, want := range []string{"kind: Deployment", "name: web", "fieldPath: metadata.name", "cpu: 100m"} {
			if !strings.Contains(y, want) {
				t.Errorf("-o yaml lacks %q:\n%s", want, y)
			}
		}
		var obj struct {
			Spec struct {
				Replicas int `json:"replicas"`
			} `json:"spec"`
		}
		if err := json.Unmarshal([]byte(k.ok("get", "deploy", "web", "-n", "shop", "-o", "json")), &obj); err != nil || obj.Spec.Replicas != 2 {
			t.Errorf("-o json: replicas %d, %v", obj.Spec.Replicas, err)
		}
		wide := k.ok("get", "deploy", "-n", "shop", "-o", "wide")
		expectLines(t, wide, "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR")
		if !regexp.MustCompile(`(?m)^web\s+\d/2\s+\d\s+\d\s+\S+\s+web\s+nginx:1.28\s+app=web$`).MatchString(wide) {
			t.Errorf("-o wide row:\n%s", wide)
		}
		plain := k.ok("get", "svc", "-n", "shop")
		expectLines(t, plain, "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE")
		if got := k.ok("get", "deploy,svc", "-n", "shop", "-o", "name"); got != "deployment.apps/web\nservice/web\n" {
			t.Errorf("-o name: %q", got)
		}
		if got := k.ok("get", "deploy", "-A", "-l", "app=web", "-o", "name"); got != "deployment.apps/web\n" {
			t.Errorf("-l app=web: %q", got)
		}
		_, errOut, err := k.run("get", "deploy", "-n", "shop", "-l", "app=nothing")
		if err != nil || !strings.Contains(errOut, "No resources found in shop namespace.") {
			t.Errorf("-l app=nothing: %v %q", err, errOut)
		}
		ns := k.ok("get", "ns")
		expectLines(t, ns, "NAME STATUS AGE")
		if !regexp.MustCompile(`(?m)^shop\s+Active\s+`).MatchString(ns) {
			t.Errorf("get ns:\n%s", ns)
		}
	})

	t.Run("describe", func(t *testing.T) {
		out := k.ok("describe", "deploy", "web", "-n", "shop")
		for _, want := range []string{"Name:                   web", "Replicas:               2 desired",
			"Image:      nginx:1.28", "Readiness:  http-get http://:http/healthz"} {
			if !strings.Contains(out, want) {
				t.Errorf("describe lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("scale-label-annotate-patch", func(t *testing.T) {
		expectLines(t, k.ok("scale", "deploy", "web", "-n", "shop", "--replicas=4"), "deployment.apps/web scaled")
		expectLines(t, k.ok("label", "deploy", "web", "-n", "shop", "tier=front"), "deployment.apps/web labeled")
		expectLines(t, k.ok("annotate", "deploy", "web", "-n", "shop", "note=hello"), "deployment.apps/web annotated")
		expectLines(t, k.ok("patch", "deploy", "web", "-n", "shop", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.29"}]}}}}`), "deployment.apps/web patched")
		expectLines(t, k.ok("patch", "deploy", "web", "-n", "shop", "--type=merge", "-p", `{"spec":{"minReadySeconds":3}}`),
			"deployment.apps/web patched")
		expectLines(t, k.ok("patch", "deploy", "web", "-n", "shop", "--type=json", "-p",
			`[{"op":"replace","path":"/spec/template/spec/containers/0/env/1/value","value":"canary"}]`), "deployment.apps/web patched")
		got := k.ok("get", "deploy", "web", "-n", "shop", "-o",
			`jsonpath={.spec.replicas} {.metadata.labels.tier} {.metadata.annotations.note} {.spec.template.spec.containers[0].image} {.spec.minReadySeconds} {.spec.template.spec.containers[0].env[1].value} {.spec.template.spec.containers[0].env[0].name}`)
		if got != "4 front hello nginx:1.29 3 canary POD_NAME" {
			t.Errorf("after scale, label, annotate and patches: %q", got)
		}
		// A strategic merge patch that deletes a list item by its merge key.
		k.ok("patch", "deploy", "web", "-n", "shop", "-p",
			`{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"MODE","$patch":"delete"}]}]}}}}`)
		if got := k.ok("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"); got != "POD_NAME" {
			t.Errorf("env after deleting MODE: %q", got)
		}
		if got := k.ok("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"); got != "4" {
			t.Errorf("scale subresource: replicas %q", got)
		}
	})

	t.Run("server-side-apply", func(t *testing.T) {
		out, errOut, err := k.run("apply", "--server-side", "-f", "app.yaml")
		if err == nil || !strings.Contains(errOut, "Apply failed with") ||
			!strings.Contains(errOut, `conflict with "kubectl-patch" using apps/v1: .spec.template.spec.containers[name="web"].image`) ||
			!strings.Contains(errOut, `conflict with "kubectl" using apps/v1: .spec.replicas`) {
			t.Errorf("apply --server-side over other managers' values: %v\n%s%s", err, out, errOut)
		}
		expectLines(t, k.ok("apply", "--server-side", "--force-conflicts", "-f", "app.yaml"),
			"namespace/shop serverside-applied", "deployment.apps/web serverside-applied", "service/web serverside-applied")
		if got := k.ok("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}"); got != "2 nginx:1.27" {
			t.Errorf("after a forced server-side apply: %q", got)
		}
		mf := k.ok("get", "deploy", "web", "-n", "shop", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[*].manager}")
		if !strings.Contains(mf, "kubectl") || !strings.Contains(mf, "kubectl-label") {
			t.Errorf("managers: %q", mf)
		}
		// Applying the same configuration again changes nothing and conflicts with nobody.
		expectLines(t, k.ok("apply", "--server-side", "-f", "app.yaml"), "deployment.apps/web serverside-applied")
	})

	t.Run("watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := k.command(ctx, "get", "deploy", "web", "-n", "shop", "--watch")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		wait := func(re *regexp.Regexp) {
			t.Helper()
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("kubectl get --watch ended before printing %s", re)
					}
					if re.MatchString(l) {
						return
					}
				case <-ctx.Done():
					t.Fatalf("kubectl get --watch printed no line matching %s", re)
				}
			}
		}
		wait(regexp.MustCompile(`^web\s+\d/2\s`))
		k.ok("scale", "deploy", "web", "-n", "shop", "--replicas=7")
		wait(regexp.MustCompile(`^web\s+\d/7\s`))
	})

	t.Run("dry-run", func(t *testing.T) {
		expectLines(t, k.ok("delete", "deploy", "web", "-n", "shop", "--dry-run=server"), `deployment.apps "web" deleted (server dry run)`)
		k.ok("get", "deploy", "web", "-n", "shop")
		expectLines(t, k.ok("create", "deployment", "ghost", "-n", "shop", "--image=busybox", "--dry-run=server"),
			"deployment.apps/ghost created (server dry run)")
		if _, errOut, err := k.run("get", "deploy", "ghost", "-n", "shop"); err == nil || !strings.Contains(errOut, "NotFound") {
			t.Errorf("a dry-run create stored the deployment: %v %s", err, errOut)
		}
		expectLines(t, k.ok("scale", "deploy", "web", "-n", "shop", "--replicas=9", "--dry-run=server"),
			"deployment.apps/web scaled (server dry run)")
		if got := k.ok("get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"); got != "7" {
			t.Errorf("a dry-run scale changed replicas to %s", got)
		}
	})

	t.Run("explain", func(t *testing.T) {
		out := k.ok("explain", "deployment.spec.replicas")
		for _, want := range []string{"KIND:       Deployment", "FIELD: replicas <integer>", "Number of desired pods"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain lacks %q:\n%s", want, out)
			}
		}
		out = k.ok("explain", "pods.spec.containers")
		for _, want := range []string{"FIELD: containers <[]Container>", "image\t<string>", "ports\t<[]ContainerPort>"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain pods.spec.containers lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("create-and-rollout", func(t *testing.T) {
		expectLines(t, k.ok("create", "deployment", "api", "-n", "shop", "--image=busybox:1.36", "--replicas=2"),
			"deployment.apps/api created")
		if got := k.ok("get", "deploy", "api", "-n", "shop", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}"); got != "2 busybox:1.36" {
			t.Errorf("created deployment: %q", got)
		}
		// The controllers, scheduler and simulated kubelet of runControlPlane roll it out.
		out := k.ok("rollout", "status", "deploy/api", "-n", "shop", "--timeout=60s")
		if !strings.Contains(out, `deployment "api" successfully rolled out`) {
			t.Errorf("rollout status:\n%s", out)
		}
	})

	t.Run("delete", func(t *testing.T) {
		expectLines(t, k.ok("delete", "deploy", "api", "-n", "shop", "--cascade=foreground"), `deployment.apps "api" deleted`)
		expectLines(t, k.ok("delete", "deploy", "web", "-n", "shop", "--cascade=orphan"), `deployment.apps "web" deleted`)
		expectLines(t, k.ok("delete", "-f", "app.yaml", "--cascade=background", "--ignore-not-found"),
			`namespace "shop" deleted`, `service "web" deleted`)
		if _, errOut, err := k.run("get", "deploy", "web", "-n", "shop"); err == nil || !strings.Contains(errOut, "NotFound") {
			t.Errorf("deployment still there after delete: %v %s", err, errOut)
		}
	})
}
