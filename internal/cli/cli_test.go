package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// webManifest is a standard Kubernetes Deployment and Service, as users write them.
const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: nginx
          image: nginx:1.25
          ports:
            - containerPort: 80
          resources:
            requests:
              cpu: 100m
              memory: 64Mi
            limits:
              memory: 128Mi
          readinessProbe:
            httpGet:
              path: /
              port: 80
            periodSeconds: 5
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 80
`

type result struct {
	code           int
	stdout, stderr string
}

// skiff runs the CLI in-process against server, with stdin as standard input.
func skiff(t *testing.T, server, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}
	code := Execute(context.Background(), streams, append([]string{"--server", server}, args...))
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mustSkiff runs the CLI and fails the test unless it succeeds.
func mustSkiff(t *testing.T, server string, args ...string) result {
	t.Helper()
	r := skiff(t, server, "", args...)
	if r.code != 0 {
		t.Fatalf("skiff %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantLines(t *testing.T, got string, want ...string) {
	t.Helper()
	if g := strings.Split(strings.TrimSpace(got), "\n"); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output:\n%s\nwant lines:\n%s", got, strings.Join(want, "\n"))
	}
}

// TestWorkflow applies, re-applies, changes, lists, scales and deletes a Deployment and a
// Service, over gRPC and over REST.
func TestWorkflow(t *testing.T) {
	for _, transport := range []string{"grpc", "rest"} {
		t.Run(transport, func(t *testing.T) {
			env := testenv.Start(t)
			server := env.GRPCAddr
			if transport == "rest" {
				server = env.HTTPURL
			}
			file := writeFile(t, t.TempDir(), "web.yaml", webManifest)

			r := mustSkiff(t, server, "apply", "-f", file)
			wantLines(t, r.stdout, "deployment.apps/web created", "service/web created")

			r = mustSkiff(t, server, "apply", "-f", file)
			wantLines(t, r.stdout, "deployment.apps/web unchanged", "service/web unchanged")

			writeFile(t, filepath.Dir(file), "web.yaml", strings.Replace(webManifest, "replicas: 3", "replicas: 4", 1))
			r = mustSkiff(t, server, "apply", "-f", file)
			wantLines(t, r.stdout, "deployment.apps/web configured", "service/web unchanged")

			r = mustSkiff(t, server, "get", "deployments,services")
			for _, want := range []string{"deployment.apps/web", "service/web", "READY", "CLUSTER-IP", "80/TCP"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("get deployments,services: no %q in\n%s", want, r.stdout)
				}
			}
			if tables := strings.Split(strings.TrimSpace(r.stdout), "\n\n"); len(tables) != 2 {
				t.Errorf("want two tables separated by a blank line, got:\n%s", r.stdout)
			}

			r = mustSkiff(t, server, "get", "deploy", "web", "-o", "yaml")
			for _, want := range []string{"kind: Deployment", "replicas: 4", "name: web"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("get deploy web -o yaml: no %q in\n%s", want, r.stdout)
				}
			}

			r = mustSkiff(t, server, "scale", "deployment/web", "--replicas=5")
			wantLines(t, r.stdout, "deployment.apps/web scaled")
			r = mustSkiff(t, server, "get", "deploy", "web", "-o", "json")
			var dep struct {
				Kind string
				Spec struct{ Replicas int }
			}
			if err := json.Unmarshal([]byte(r.stdout), &dep); err != nil {
				t.Fatalf("get -o json: %v\n%s", err, r.stdout)
			}
			if dep.Kind != "Deployment" || dep.Spec.Replicas != 5 {
				t.Errorf("after scale: kind %q replicas %d, want Deployment 5", dep.Kind, dep.Spec.Replicas)
			}
			r = mustSkiff(t, server, "get", "deployments")
			if !strings.Contains(r.stdout, "0/5") {
				t.Errorf("get deployments: want READY 0/5 in\n%s", r.stdout)
			}

			r = mustSkiff(t, server, "describe", "deployment", "web")
			for _, want := range []string{"Name:", "web", "Replicas:", "5 desired", "StrategyType:", "nginx:1.25", "Events:"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("describe: no %q in\n%s", want, r.stdout)
				}
			}

			r = mustSkiff(t, server, "delete", "-f", file)
			wantLines(t, r.stdout, `deployment.apps "web" deleted`, `service "web" deleted`)
			// What is left is the apiserver's own `kubernetes` Service, as in Kubernetes.
			r = skiff(t, server, "", "get", "deployments,services", "-o", "name")
			if r.code != 0 || r.stdout != "service/kubernetes\n" {
				t.Errorf("get after delete: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
			r = skiff(t, server, "", "get", "deployments")
			if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "No resources found in default namespace.") {
				t.Errorf("get deployments after delete: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestGetEmptyJSON(t *testing.T) {
	env := testenv.Start(t)
	r := mustSkiff(t, env.GRPCAddr, "get", "pods", "-o", "json")
	want := "{\n    \"apiVersion\": \"v1\",\n    \"items\": [],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if r.stderr != "" {
		t.Errorf("stderr: %q", r.stderr)
	}

	r = mustSkiff(t, env.GRPCAddr, "get", "pods")
	if r.stdout != "" || r.stderr != "No resources found in default namespace.\n" {
		t.Errorf("get pods: stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestErrors(t *testing.T) {
	env := testenv.Start(t)
	server := env.GRPCAddr

	t.Run("not found", func(t *testing.T) {
		r := skiff(t, server, "", "get", "pods", "web")
		if r.code != 1 || !strings.Contains(r.stderr, `Error from server (NotFound): pods "web" not found`) {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		r = skiff(t, server, "", "delete", "pod", "web")
		if r.code != 1 || !strings.Contains(r.stderr, "Error from server (NotFound)") {
			t.Errorf("delete: exit %d, stderr %q", r.code, r.stderr)
		}
		mustSkiff(t, server, "delete", "pod", "web", "--ignore-not-found")
	})

	t.Run("invalid manifest", func(t *testing.T) {
		bad := strings.Replace(webManifest, "name: web\n  labels", "name: Bad_Name\n  labels", 1)
		r := skiff(t, server, bad, "apply", "-f", "-")
		if r.code != 1 || !strings.Contains(r.stderr, "metadata.name") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
		// The other object of the file is still applied.
		if !strings.Contains(r.stdout, "service/web created") {
			t.Errorf("stdout %q, want service/web created", r.stdout)
		}
	})

	t.Run("namespace mismatch", func(t *testing.T) {
		m := "apiVersion: v1\nkind: Service\nmetadata:\n  name: other\n  namespace: a\nspec:\n  ports:\n  - port: 80\n"
		r := skiff(t, server, m, "apply", "-n", "b", "-f", "-")
		want := `the namespace from the provided object "a" does not match the namespace "b". You must pass '--namespace=a' to perform this operation.`
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"get"},
			{"get", "widgets"},
			{"get", "pods", "-o", "xml"},
			{"apply"},
			{"scale", "deployment/web"},
			{"scale", "service/web", "--replicas=2"},
			{"delete", "pods"},
			{"nosuchcommand"},
		} {
			r := skiff(t, server, "", args...)
			if r.code != 1 || !strings.HasPrefix(r.stderr, "error: ") {
				t.Errorf("skiff %v: exit %d, stderr %q", args, r.code, r.stderr)
			}
		}
	})
}

func TestApplyWarningsAndDirectory(t *testing.T) {
	env := testenv.Start(t)
	dir := t.TempDir()
	withUnknown := strings.Replace(webManifest, "      containers:", "      securityContext:\n        runAsNonRoot: true\n      containers:", 1)
	writeFile(t, dir, "b.yaml", withUnknown)
	writeFile(t, dir, "a.json", `{"apiVersion":"v1","kind":"Service","metadata":{"name":"api"},"spec":{"ports":[{"port":8080}]}}`)
	writeFile(t, dir, "notes.txt", "not a manifest")

	r := mustSkiff(t, env.GRPCAddr, "apply", "-f", dir)
	wantLines(t, r.stdout, "service/api created", "deployment.apps/web created", "service/web created")
	if !strings.Contains(r.stderr, `Warning: unknown field "spec.template.spec.securityContext"`) {
		t.Errorf("stderr %q: want the unknown field warning", r.stderr)
	}

	r = mustSkiff(t, env.HTTPURL, "get", "svc", "-A", "-o", "wide")
	if !strings.HasPrefix(r.stdout, "NAMESPACE") || !strings.Contains(r.stdout, "SELECTOR") || !strings.Contains(r.stdout, "app=web") {
		t.Errorf("get svc -A -o wide:\n%s", r.stdout)
	}
	r = mustSkiff(t, env.GRPCAddr, "get", "svc", "-o", "name", "--chunk-size", "1")
	wantLines(t, r.stdout, "service/api", "service/kubernetes", "service/web")
	r = mustSkiff(t, env.GRPCAddr, "get", "svc", "-l", "app=web", "-o", "name")
	if r.stdout != "" {
		t.Errorf("selector app=web matched services without that label: %q", r.stdout)
	}
	r = mustSkiff(t, env.GRPCAddr, "get", "deploy", "-l", "app=web", "-o", "name")
	wantLines(t, r.stdout, "deployment.apps/web")
	r = mustSkiff(t, env.GRPCAddr, "describe", "svc", "web")
	for _, want := range []string{"Type:", "ClusterIP", "Port:", "80/TCP", "Selector:", "app=web", "Events:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe svc: no %q in\n%s", want, r.stdout)
		}
	}
	r = mustSkiff(t, env.GRPCAddr, "delete", "svc/api", "deploy/web", "svc/web", "--now")
	wantLines(t, r.stdout, `service "api" deleted`, `deployment.apps "web" deleted`, `service "web" deleted`)
}

func TestVersion(t *testing.T) {
	r := mustSkiff(t, "127.0.0.1:1", "version")
	if r.stdout != "Client Version: "+Version+"\n" {
		t.Errorf("version: %q", r.stdout)
	}
}

// TestDescribePod checks the pod view and that describe finds the pod's events by field
// selector on the involved object.
func TestDescribePod(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	now := time.Now().UTC().Format(time.RFC3339)
	objs := []scheme.Object{
		&corev1.Pod{ApiVersion: "v1", Kind: "Pod", Metadata: &metav1.ObjectMeta{Name: "p1", Namespace: "default", Labels: map[string]string{"app": "x"}},
			Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1.36",
				Resources: &corev1.ResourceRequirements{Requests: map[string]string{"cpu": "250m"}}}}}},
		&corev1.Event{ApiVersion: "v1", Kind: "Event", Metadata: &metav1.ObjectMeta{Name: "p1.1", Namespace: "default"},
			InvolvedObject: &metav1.ObjectReference{Kind: "Pod", Name: "p1", Namespace: "default"},
			Reason:         "Scheduled", Message: "Successfully assigned default/p1 to node-a", Type: "Normal",
			Source: &corev1.EventSource{Component: "scheduler"}, FirstTimestamp: now, LastTimestamp: now, Count: 1},
		// An event about another object must not show up.
		&corev1.Event{ApiVersion: "v1", Kind: "Event", Metadata: &metav1.ObjectMeta{Name: "p2.1", Namespace: "default"},
			InvolvedObject: &metav1.ObjectReference{Kind: "Pod", Name: "p2", Namespace: "default"},
			Reason:         "Killing", Message: "Stopping container", Type: "Normal", LastTimestamp: now},
	}
	for _, obj := range objs {
		if _, err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetMetadata().GetName(), err)
		}
	}
	r := mustSkiff(t, env.GRPCAddr, "describe", "pod", "p1")
	for _, want := range []string{"Name:", "p1", "Labels:", "app=x", "Status:", "Pending", "busybox:1.36", "Requests:", "250m",
		"Events:", "Scheduled", "Successfully assigned default/p1 to node-a"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe pod: no %q in\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "Killing") {
		t.Errorf("describe pod shows another pod's event:\n%s", r.stdout)
	}
	r = mustSkiff(t, env.GRPCAddr, "get", "events")
	if !strings.HasPrefix(r.stdout, "LAST SEEN") || !strings.Contains(r.stdout, "pod/p1") {
		t.Errorf("get events:\n%s", r.stdout)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reading test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestGetWatch(t *testing.T) {
	env := testenv.Start(t)
	for name, server := range map[string]string{"grpc": env.GRPCAddr, "rest": env.HTTPURL} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out, errOut syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- Execute(ctx, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
					[]string{"--server", server, "get", "pods", "-w"})
			}()
			pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "watched-" + name, Namespace: "default"},
				Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1"}}}}
			// The watch starts at the list's revision; create once the header shows.
			for !strings.Contains(out.String(), "NAME") && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := env.Client.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
			for !strings.Contains(out.String(), "watched-"+name) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			if code := <-done; code != 0 || !strings.Contains(out.String(), "watched-"+name) {
				t.Errorf("get -w: exit %d, out %q, err %q", code, out.String(), errOut.String())
			}
		})
	}
}
