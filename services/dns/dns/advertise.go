package dns

import (
	"fmt"
	"net"
	"net/netip"
)

// DefaultAdvertiseAddr is the address of the interface that holds the default route: what
// the node's pods and processes reach this host at. A UDP socket's connect only chooses a
// route and a source address; it sends nothing.
func DefaultAdvertiseAddr() (netip.Addr, error) {
	c, err := net.Dial("udp4", "192.0.2.1:53") // TEST-NET-1: never answered, never sent to
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find the address of the default route: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
