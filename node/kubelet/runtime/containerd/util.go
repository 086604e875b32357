package containerd

import (
	"crypto/rand"
	"encoding/hex"
	"net"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/platforms"
)

var tasksListRequest = tasksapi.ListTasksRequest{}

// newID is a random 64-hex-digit identifier, as Docker and CRI runtimes name containers.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func defaultPlatform() platforms.MatchComparer { return platforms.Default() }

// hostIP is the host's first non-loopback IPv4 address (host-network pods' IP).
func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "127.0.0.1"
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return "127.0.0.1"
}
