package logfile

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 5000 {
		b.WriteString(strings.Repeat("x", i%7) + "\n")
	}
	content := b.String() + "partial"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(content, "\n")
	for _, n := range []int64{0, 1, 2, 3, 4000, 5001, 9999} {
		var out bytes.Buffer
		if err := Copy(context.Background(), path, Options{TailLines: n}, &out); err != nil {
			t.Fatal(err)
		}
		want := strings.Join(lines[max(0, len(lines)-int(n)):], "")
		if n == 0 {
			want = ""
		}
		if out.String() != want {
			t.Errorf("tail %d: got %d bytes, want %d", n, out.Len(), len(want))
		}
	}
	var all bytes.Buffer
	_ = Copy(context.Background(), path, Options{TailLines: -1, LimitBytes: 10}, &all)
	if all.String() != content[:10] {
		t.Errorf("limitBytes 10: %q", all.String())
	}
}

// TestFollow: a follower sees what is appended and ends once the writer stops running.
func TestFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var running atomic.Bool
	running.Store(true)
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Copy(context.Background(), path, Options{TailLines: -1, Follow: true, Running: running.Load}, &out)
	}()
	time.Sleep(150 * time.Millisecond) // the file does not exist yet: the follower waits for it
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("one\n")
	time.Sleep(250 * time.Millisecond)
	f.WriteString("two\n")
	f.Close()
	running.Store(false)
	select {
	case err := <-done:
		if err != nil || out.String() != "one\ntwo\n" {
			t.Errorf("followed %q, %v", out.String(), err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follower did not stop after the container did")
	}
}
