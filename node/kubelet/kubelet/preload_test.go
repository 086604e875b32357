package kubelet_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-project/skiff/node/kubelet/kubelet"
)

// TestExpandPreload: --preload-images takes files and globs; a pattern that matches nothing
// is an error (a node must not register without the images it was told to hold).
func TestExpandPreload(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"a.tar", "b.tar", "c.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := kubelet.ExpandPreload(filepath.Join(dir, "*.tar") + ", " + filepath.Join(dir, "c.txt") + ",")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar"), filepath.Join(dir, "c.txt")}
	if !slices.Equal(got, want) {
		t.Errorf("ExpandPreload = %v, want %v", got, want)
	}
	if got, err := kubelet.ExpandPreload(""); err != nil || len(got) != 0 {
		t.Errorf("ExpandPreload(\"\") = %v, %v; want nothing", got, err)
	}
	for _, bad := range []string{filepath.Join(dir, "*.tgz"), filepath.Join(dir, "missing.tar"), "[" + dir} {
		if _, err := kubelet.ExpandPreload(bad); err == nil || !strings.Contains(err.Error(), "--preload-images") {
			t.Errorf("ExpandPreload(%q): error %v, want one naming --preload-images", bad, err)
		}
	}
}
