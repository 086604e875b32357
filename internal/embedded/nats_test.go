package embedded

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The embedded NATS server logs through slog: its errors arrive as structured records, not
// as plain lines on stderr.
func TestNATSLogsThroughSlog(t *testing.T) {
	var out lockedBuffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := StartNATS(NATSConfig{Dir: t.TempDir(), Addr: "127.0.0.1:0", MaxPayload: 1024, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	// A client that ignores the server's max payload: the server logs the violation.
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.URL, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false}\r\nPUB x 4096\r\n%s\r\n", strings.Repeat("x", 4096))

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "maximum payload") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("not a JSON log record: %q", line)
			continue
		}
		if strings.Contains(fmt.Sprint(rec["msg"]), "maximum payload") {
			found = true
			if rec["level"] != "ERROR" || rec["component"] != "nats" {
				t.Errorf("max payload violation logged as %v", rec)
			}
		}
	}
	if !found {
		t.Errorf("the server's max payload violation was not logged through slog; log:\n%s", out.String())
	}
}
