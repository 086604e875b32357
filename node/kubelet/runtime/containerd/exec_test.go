package containerd_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/nodetest"
	"github.com/skiff-project/skiff/node/kubelet/runtime"
	ctrd "github.com/skiff-project/skiff/node/kubelet/runtime/containerd"
)

// TestExecOutputIntoOneWriter: exec output reaches a caller that passes one writer (a
// bytes.Buffer, no lock) as both stdout and stderr, every time, and a caller that passes no
// stderr at all.
func TestExecOutputIntoOneWriter(t *testing.T) {
	nodetest.RequireRoot(t)
	ctx := context.Background()
	images := nodetest.Images(t)
	dir := nodetest.ShortTempDir(t)
	d, err := ctrd.StartDaemon(ctx, ctrd.DaemonConfig{Dir: filepath.Join(dir, "ctrd")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop() })
	rt, err := ctrd.New(ctx, ctrd.Config{Address: d.Address, StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(images.Busybox)
	imgs, _ := rt.ImportImages(ctx, f)
	sb, err := rt.RunSandbox(ctx, runtime.SandboxConfig{Pod: runtime.PodRef{UID: "u", Name: "p", Namespace: "d"}, Hostname: "p", HostNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	id, err := rt.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c", Image: imgs[0].Name, Command: []string{"sleep", "100"}, LogPath: filepath.Join(dir, "c.log")})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = rt.StopContainer(ctx, id, 0)
		_ = rt.RemoveContainer(ctx, id)
		_ = rt.RemoveSandbox(ctx, sb.ID)
	}()
	empty := 0
	start := time.Now()
	for i := range 30 {
		var out bytes.Buffer
		cmd := []string{"sh", "-c", "echo hi; exit 7"}
		if i%2 == 1 {
			cmd = []string{"sh", "-c", "ip -4 addr >/dev/null; echo hi; exit 7"}
		}
		opts := runtime.ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out}
		if i%3 == 0 {
			opts.Stderr = nil
		}
		code, err := rt.Exec(ctx, id, opts)
		if err != nil || code != 7 {
			t.Fatal(code, err)
		}
		if out.String() != "hi\n" {
			empty++
			t.Logf("exec %d %v: %q", i, cmd, out.String())
		}
	}
	// Writers of a type == cannot compare (the kubelet API's are): no panic, output arrives.
	var got bytes.Buffer
	w := funcWriter{write: got.Write}
	if code, err := rt.Exec(ctx, id, runtime.ExecOptions{Cmd: []string{"echo", "hi"}, Stdout: w, Stderr: w}); err != nil || code != 0 || got.String() != "hi\n" {
		t.Errorf("exec into an uncomparable writer: %d %v %q", code, err, got.String())
	}
	t.Logf("%d of 30 execs lost their output (%s)", empty, time.Since(start))
	if empty > 0 {
		t.Fail()
	}
}

// funcWriter is a writer whose type is not comparable.
type funcWriter struct {
	write func([]byte) (int, error)
}

func (f funcWriter) Write(p []byte) (int, error) { return f.write(p) }
