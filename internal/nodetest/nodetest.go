// Package nodetest is what the kubelet's tests share: the check that the machine can run
// containers (root, containerd, runc, CNI plugins, busybox-static), the test images built in
// process, short temp dirs and unused pod CIDRs.
//
// Tests that need containers skip with a message saying what is missing, except when
// SKIFF_NODE_TESTS=require (CI sets it): then a missing piece fails the test, so CI cannot pass
// by skipping them.
package nodetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-project/skiff/internal/imagebuild"
	"github.com/skiff-project/skiff/node/kubelet/cni"
	ctrd "github.com/skiff-project/skiff/node/kubelet/runtime/containerd"
)

// RequireEnv makes missing prerequisites fail instead of skip.
const RequireEnv = "SKIFF_NODE_TESTS"

// RequireRoot skips (or, with SKIFF_NODE_TESTS=require, fails) the test unless the machine
// can run containers.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() && os.Getenv(RequireEnv) != "require" {
		t.Skip("runs containers; skipped with -short")
	}
	missing := ctrd.Requirements()
	if _, err := cni.FindPlugins(nil); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		missing = append(missing, "busybox-static at "+BusyboxPath+" (Debian: apt-get install busybox-static)")
	}
	if len(missing) == 0 {
		return
	}
	msg := "this test runs real containers and needs: " + strings.Join(missing, "; ")
	if os.Getenv(RequireEnv) == "require" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// BusyboxPath is Debian's busybox-static.
const BusyboxPath = "/bin/busybox"

// TestImages are image tarballs built for the test process.
type TestImages struct {
	Demo, Busybox string // tarball paths
	Dir           string
}

var (
	imagesOnce sync.Once
	images     TestImages
	imagesErr  error
)

// Images builds the demo and busybox image tarballs once per test process, into one shared
// directory (os.TempDir()/skiff-test-images): each tarball is written beside its final name and
// renamed into place, so test processes running at once never read a half-written one, and
// nothing accumulates across runs.
func Images(t testing.TB) TestImages {
	t.Helper()
	imagesOnce.Do(func() { images, imagesErr = buildImages() })
	if imagesErr != nil {
		t.Fatalf("build test images: %v", imagesErr)
	}
	return images
}

func buildImages() (TestImages, error) {
	out := TestImages{Dir: filepath.Join(os.TempDir(), "skiff-test-images")}
	if err := os.MkdirAll(out.Dir, 0o755); err != nil {
		return out, err
	}
	root, err := moduleRoot()
	if err != nil {
		return out, err
	}
	work, err := os.MkdirTemp(out.Dir, "build")
	if err != nil {
		return out, err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "demo")
	if err := imagebuild.BuildStatic(context.Background(), root, "./deploy/images/demo", bin); err != nil {
		return out, err
	}
	demo, err := imagebuild.Demo(bin)
	if err != nil {
		return out, err
	}
	bb, err := imagebuild.Busybox(BusyboxPath)
	if err != nil {
		return out, err
	}
	out.Demo, out.Busybox = filepath.Join(out.Dir, "demo.tar"), filepath.Join(out.Dir, "busybox.tar")
	for path, img := range map[string]struct {
		name string
		img  v1.Image
	}{out.Demo: {imagebuild.DemoImage, demo}, out.Busybox: {imagebuild.BusyboxImage, bb}} {
		tmp := filepath.Join(work, filepath.Base(path))
		if err := imagebuild.WriteTar(tmp, img.name, img.img); err != nil {
			return out, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return out, err
		}
	}
	return out, nil
}

// ModuleRoot is the repository's root (the directory holding go.mod).
func ModuleRoot() (string, error) { return moduleRoot() }

// moduleRoot finds the directory holding go.mod above this source file.
func moduleRoot() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above %s", file)
		}
		dir = parent
	}
}

// ShortTempDir is a temp dir with a short path (unix sockets limit paths to ~108 bytes),
// removed when the test ends.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// PodCIDR picks a /24 in 10.200.0.0/13 that no interface of the host uses.
func PodCIDR(t testing.TB) string {
	t.Helper()
	for range 100 {
		cidr := fmt.Sprintf("10.%d.%d.0/24", 200+rand.IntN(8), rand.IntN(256))
		_, ipnet, _ := net.ParseCIDR(cidr)
		if !inUse(ipnet) {
			return cidr
		}
	}
	t.Fatal("no free pod CIDR")
	return ""
}

func inUse(n *net.IPNet) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && (n.Contains(ipn.IP) || ipn.Contains(n.IP)) {
			return true
		}
	}
	return false
}

// Eventually retries cond until it returns nil or timeout passes, then fails with its error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
