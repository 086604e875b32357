package up

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/services/rs-controller/manager"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs `skiff up` on dir and returns its REST URL and a stop function that waits for a
// clean exit.
func start(t *testing.T, dir string) (string, func()) {
	t.Helper()
	opts := Options{DataDir: dir, HTTPAddr: freeAddr(t), GRPCAddr: freeAddr(t), EtcdAddr: "127.0.0.1:0",
		NATSAddr: "127.0.0.1:0", Stream: bus.DefaultStreamConfig(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Controllers: manager.DefaultOptions()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- Run(ctx, opts) }()
	url := "http://" + opts.HTTPAddr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("skiff up exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("skiff up not ready in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ready in %s", time.Since(began))
	return url, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("skiff up stopped with error: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("skiff up did not stop in 20s")
		}
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	url, stop := start(t, dir)
	body := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"keep"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`
	resp, err := http.Post(url+"/api/v1/namespaces/default/pods", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	created, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, created)
	}
	stop()

	url, stop = start(t, dir)
	defer stop()
	resp, err = http.Get(url + "/api/v1/namespaces/default/pods/keep")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"name":"keep"`) {
		t.Fatalf("after restart: %d %s", resp.StatusCode, got)
	}
	uid := func(b []byte) string {
		i := strings.Index(string(b), `"uid":"`)
		if i < 0 {
			return ""
		}
		return string(b[i+7 : i+7+36])
	}
	if uid(got) == "" || uid(got) != uid(created) {
		t.Errorf("uid changed across restart: %q vs %q", uid(got), uid(created))
	}
}

// TestControllersRun checks that skiff up runs the controllers: a Deployment gets its
// ReplicaSet and pods, a Service its Endpoints, and a foreground delete (which needs the garbage
// collector) takes everything away.
func TestControllersRun(t *testing.T) {
	url, stop := start(t, t.TempDir())
	defer stop()
	c := client.NewREST(url, nil)
	ctx := context.Background()
	lbls := map[string]string{"app": "web"}
	objs := []scheme.Object{
		&appsv1.Deployment{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: &appsv1.DeploymentSpec{Replicas: proto.Int32(2), Selector: &metav1.LabelSelector{MatchLabels: lbls},
				Template: &corev1.PodTemplateSpec{Metadata: &metav1.ObjectMeta{Labels: lbls},
					Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "web", Image: "web:1"}}}}}},
		&corev1.Service{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: &corev1.ServiceSpec{Selector: lbls, Ports: []*corev1.ServicePort{{Port: 80}}}},
	}
	for _, o := range objs {
		if _, err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	kind := func(n string) *scheme.Kind { k, _ := scheme.Default().ForName(n); return k }
	count := func(k string) int {
		l, err := c.List(ctx, kind(k), "default", client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("replica set, 2 pods and endpoints", func() bool {
		return count("replicasets") == 1 && count("pods") == 2 && count("endpoints") == 1
	})
	// The garbage collector announces itself once it runs; then a foreground delete is taken.
	waitFor("foreground delete accepted", func() bool {
		_, err := c.Delete(ctx, kind("deployments"), "default", "web", client.DeleteOptions{PropagationPolicy: "Foreground"})
		return err == nil
	})
	waitFor("deployment, replica set and pods gone", func() bool {
		return count("deployments")+count("replicasets")+count("pods") == 0
	})
}
