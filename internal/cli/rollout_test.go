package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testenv/cluster"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/rs-controller/deployment"
	"github.com/skiff-project/skiff/services/rs-controller/garbagecollector"
	"github.com/skiff-project/skiff/services/rs-controller/replicaset"
)

// slowRollout rolls one pod at a time, each available a second after it is ready, so that
// `rollout status` has progress to show.
const slowRollout = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  minReadySeconds: 1
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
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
          image: web:1
`

func startWorkloadControllers(c *cluster.Cluster) {
	c.StartProcess("rs-controller", func(f *informer.Factory) (func(context.Context) error, error) {
		rc, _ := replicaset.New(replicaset.Config{Client: c.Client, Informers: f, Logger: c.Log})
		dc, _ := deployment.New(deployment.Config{Client: c.Client, Informers: f, Logger: c.Log})
		gc, err := garbagecollector.New(garbagecollector.Config{Client: c.Client, Informers: f, Logger: c.Log})
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			var wg sync.WaitGroup
			for _, run := range []func(context.Context) error{rc.Run, dc.Run, gc.Run} {
				wg.Go(func() { _ = run(ctx) })
			}
			wg.Wait()
			return nil
		}, nil
	})
}

func TestRolloutCommands(t *testing.T) {
	c := cluster.Start(t, cluster.Options{})
	startWorkloadControllers(c)
	server := c.Env.GRPCAddr
	dir := t.TempDir()
	file := writeFile(t, dir, "web.yaml", slowRollout)
	mustSkiff(t, server, "apply", "-f", file)
	r := mustSkiff(t, server, "rollout", "status", "deployment/web", "--timeout=60s")
	if !strings.HasSuffix(r.stdout, "deployment \"web\" successfully rolled out\n") {
		t.Fatalf("rollout status:\n%s", r.stdout)
	}

	writeFile(t, dir, "web.yaml", strings.Replace(slowRollout, "image: web:1", "image: web:2", 1))
	mustSkiff(t, server, "apply", "-f", filepath.Join(dir, "web.yaml"))
	r = mustSkiff(t, server, "rollout", "status", "deploy/web", "--timeout=60s")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 3 || lines[len(lines)-1] != `deployment "web" successfully rolled out` {
		t.Errorf("rollout status of an image change printed:\n%s\nwant progress lines, then success", r.stdout)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, `Waiting for deployment "web" rollout to finish: `) && l != "Waiting for deployment spec update to be observed..." {
			t.Errorf("unexpected progress line %q", l)
		}
	}
	if !strings.Contains(r.stdout, "updated replicas are available...") && !strings.Contains(r.stdout, "new replicas have been updated...") {
		t.Errorf("no progress counts in:\n%s", r.stdout)
	}

	r = mustSkiff(t, server, "rollout", "history", "deployment/web")
	wantLines(t, r.stdout, "deployment.apps/web ", "REVISION   CHANGE-CAUSE", "1          <none>", "2          <none>")
	r = mustSkiff(t, server, "rollout", "history", "deployment/web", "--revision=1")
	if !strings.Contains(r.stdout, "deployment.apps/web with revision #1") || !strings.Contains(r.stdout, "web:1") {
		t.Errorf("history --revision=1:\n%s", r.stdout)
	}

	r = mustSkiff(t, server, "rollout", "undo", "deployment/web")
	wantLines(t, r.stdout, "deployment.apps/web rolled back")
	mustSkiff(t, server, "rollout", "status", "deployment/web", "--timeout=60s")
	r = mustSkiff(t, server, "get", "deploy", "web", "-o", "wide")
	if !strings.Contains(r.stdout, "web:1") {
		t.Errorf("after undo the deployment runs:\n%s", r.stdout)
	}
	r = mustSkiff(t, server, "rollout", "history", "deployment/web")
	wantLines(t, r.stdout, "deployment.apps/web ", "REVISION   CHANGE-CAUSE", "2          <none>", "3          <none>")

	wantLines(t, mustSkiff(t, server, "rollout", "pause", "deployment/web").stdout, "deployment.apps/web paused")
	if r := skiff(t, server, "", "rollout", "pause", "deployment/web"); r.code == 0 || !strings.Contains(r.stderr, "already paused") {
		t.Errorf("pausing twice: exit %d, %s", r.code, r.stderr)
	}
	if r := skiff(t, server, "", "rollout", "undo", "deployment/web"); r.code == 0 || !strings.Contains(r.stderr, "paused") {
		t.Errorf("undo while paused: exit %d, %s", r.code, r.stderr)
	}
	wantLines(t, mustSkiff(t, server, "rollout", "resume", "deployment/web").stdout, "deployment.apps/web resumed")
	wantLines(t, mustSkiff(t, server, "rollout", "restart", "deployment/web").stdout, "deployment.apps/web restarted")
	mustSkiff(t, server, "rollout", "status", "deployment/web", "--timeout=60s")
	r = mustSkiff(t, server, "rollout", "history", "deployment/web")
	wantLines(t, r.stdout, "deployment.apps/web ", "REVISION   CHANGE-CAUSE", "2          <none>", "3          <none>", "4          <none>")

	if r := skiff(t, server, "", "rollout", "status", "service/web"); r.code == 0 {
		t.Errorf("rollout status of a service succeeded")
	}

	// Owners in wide output.
	r = mustSkiff(t, server, "get", "rs,pods", "-o", "wide")
	if !strings.Contains(r.stdout, "CONTROLLED BY") || !strings.Contains(r.stdout, "Deployment/web") || !strings.Contains(r.stdout, "ReplicaSet/web-") {
		t.Errorf("get rs,pods -o wide shows no owners:\n%s", r.stdout)
	}

	if r := skiff(t, server, "", "delete", "deployment", "web", "--cascade=sometimes"); r.code == 0 || !strings.Contains(r.stderr, "invalid cascade value") {
		t.Errorf("--cascade=sometimes: exit %d, %s", r.code, r.stderr)
	}
	wantLines(t, mustSkiff(t, server, "delete", "deployment", "web", "--cascade=orphan").stdout, `deployment.apps "web" deleted`)
	cluster.WaitFor(t, 20*time.Second, "deployment gone, its replica sets orphaned", func() (bool, string) {
		r := mustSkiff(t, server, "get", "deploy,rs", "-o", "wide")
		return !strings.Contains(r.stdout, "deployment.apps/web ") && strings.Contains(r.stdout, "replicaset.apps/web-") &&
			!strings.Contains(r.stdout, "Deployment/web"), r.stdout
	})
	r = mustSkiff(t, server, "get", "rs", "-o", "name")
	for _, rs := range strings.Fields(r.stdout) {
		mustSkiff(t, server, "delete", rs, "--cascade=foreground")
	}
	cluster.WaitFor(t, 20*time.Second, "replica sets and pods gone", func() (bool, string) {
		r := skiff(t, server, "", "get", "rs,pods")
		return strings.TrimSpace(r.stdout) == "", fmt.Sprint(r.stdout, r.stderr)
	})
}
