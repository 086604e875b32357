package kubelet_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiff-project/skiff/internal/imagebuild"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"

	"github.com/skiff-project/skiff/internal/nodetest"
)

// TestPullFromRegistry: an image the node lacks is pulled through containerd from a registry
// (go-containerregistry's in-process registry on loopback), with Pulling and Pulled events;
// an image no registry has gives ErrImagePull, then ImagePullBackOff; pull policy Never with
// a missing image gives ErrImageNeverPull.
func TestPullFromRegistry(t *testing.T) {
	c := startCluster(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img, err := imagebuild.Busybox(nodetest.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/tests/pulled:v1"
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(parsed, img); err != nil {
		t.Fatalf("push to the test registry: %v", err)
	}

	pulled := c.pod("pulled", &corev1.Container{Name: "main", Image: ref, Command: []string{"sleep", "3600"}})
	c.create(pulled)
	missing := c.pod("missing", &corev1.Container{Name: "main", Image: host + "/tests/nothing:v1"})
	c.create(missing)
	never := c.pod("never", &corev1.Container{Name: "main", Image: "skiff-absent:v1", ImagePullPolicy: "Never"})
	c.create(never)

	p := c.waitPod("pulled", 60*time.Second, "running from the pulled image", running)
	if id := containerStatus(p, "main").GetImageId(); id == "" {
		t.Errorf("imageID empty")
	}
	sawErr, sawBackOff := false, false
	c.waitPod("missing", 60*time.Second, "ErrImagePull then ImagePullBackOff", func(p *corev1.Pod) error {
		w := containerStatus(p, "main").GetState().GetWaiting()
		switch w.GetReason() {
		case "ErrImagePull":
			sawErr = true
		case "ImagePullBackOff":
			sawBackOff = true
		}
		if !sawErr || !sawBackOff || p.GetStatus().GetPhase() != "Pending" {
			return fmt.Errorf("waiting %v phase %s (seen ErrImagePull %v, ImagePullBackOff %v)", w, p.GetStatus().GetPhase(), sawErr, sawBackOff)
		}
		return nil
	})
	c.waitPod("never", 30*time.Second, "ErrImageNeverPull", func(p *corev1.Pod) error {
		if w := containerStatus(p, "main").GetState().GetWaiting(); w.GetReason() != "ErrImageNeverPull" {
			return fmt.Errorf("waiting %v", w)
		}
		return nil
	})
	events, _ := c.env.Client.Scheme().ForName("events")
	nodetestEventually(t, 10*time.Second, "Pulling and Pulled events of the pulled pod", func() error {
		return hasEvents(c.env.Client, events, "pulled", "Pulling", "Pulled")
	})
}

func hasEvents(cl client.Interface, events *scheme.Kind, pod string, reasons ...string) error {
	list, err := cl.List(context.Background(), events, "default", client.ListOptions{})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, obj := range list.Items {
		ev := obj.(*corev1.Event)
		if ev.GetInvolvedObject().GetName() == pod {
			seen[ev.GetReason()] = true
		}
	}
	for _, r := range reasons {
		if !seen[r] {
			return fmt.Errorf("no %s event for %s (seen %v)", r, pod, seen)
		}
	}
	return nil
}
