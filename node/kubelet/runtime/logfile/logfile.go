// Package logfile reads a container's log file as `skiff logs` shows it: all of it or its last
// lines, and, following, what is appended until the container stops.
package logfile

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"time"
)

// pollInterval is how often a follower looks for new output.
const pollInterval = 100 * time.Millisecond

// Options select what Copy writes.
type Options struct {
	// TailLines < 0 writes everything; otherwise the last TailLines lines.
	TailLines int64
	// LimitBytes stops after that many bytes (0: no limit).
	LimitBytes int64
	// Follow keeps writing appended output until ctx ends or Running reports false.
	Follow bool
	// Running reports whether the container still runs (may still write).
	Running func() bool
}

// Copy writes the log at path to w per opts.
func Copy(ctx context.Context, path string, opts Options, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && opts.Follow {
			// The container has not written yet; the file appears on its first output.
			f, err = waitForFile(ctx, path, opts.Running)
		}
		if err != nil {
			return err
		}
	}
	defer f.Close()
	if opts.TailLines >= 0 {
		off, err := tailOffset(f, opts.TailLines)
		if err != nil {
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
	}
	var out io.Writer = w
	if opts.LimitBytes > 0 {
		out = &limitWriter{w: w, left: opts.LimitBytes}
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				if errors.Is(werr, errLimit) {
					return nil
				}
				return werr
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if !opts.Follow {
			return nil
		}
		// At the end: stop once the container no longer runs and nothing more was written.
		if opts.Running != nil && !opts.Running() {
			if n, _ := f.Read(buf); n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil && !errors.Is(werr, errLimit) {
					return werr
				}
				continue
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pollInterval):
		}
	}
}

func waitForFile(ctx context.Context, path string, running func() bool) (*os.File, error) {
	for {
		f, err := os.Open(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return f, err
		}
		if running != nil && !running() {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// tailOffset finds where the last n lines of f begin, reading backwards in blocks. A final
// line without a newline counts as a line.
func tailOffset(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	const block = 8 << 10
	buf := make([]byte, block)
	pos := size
	newlines := int64(0)
	first := true
	for pos > 0 {
		start := max(pos-block, 0)
		chunk := buf[:pos-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] != '\n' {
				continue
			}
			if first && start+int64(i) == size-1 {
				continue // the last line's own newline
			}
			newlines++
			if newlines == n {
				return start + int64(i) + 1, nil
			}
		}
		first = false
		pos = start
	}
	return 0, nil
}

var errLimit = errors.New("byte limit reached")

type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err == nil && l.left <= 0 {
		err = errLimit
	}
	return n, err
}

// LastLines returns up to n last lines of the file at path (for termination messages and
// events); a missing file gives "".
func LastLines(path string, n int64) string {
	var b bytes.Buffer
	_ = Copy(context.Background(), path, Options{TailLines: n, LimitBytes: 4 << 10}, &b)
	return b.String()
}
