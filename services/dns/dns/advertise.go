package dns

import (
	"fmt"
	"net"
	"net/netip"
)

// DefaultAdvertiseAddr is the source address of the default route: what the node's pods and
// processes reach this host at. A UDP socket's connect only looks up the route and picks a
// source address; it sends nothing.
func DefaultAdvertiseAddr() (netip.Addr, error) {
	c, err := net.Dial("udp4", "198.51.100.1:53") // TEST-NET-2, through the default route
	if err != nil {
		return netip.Addr{}, fmt.Errorf("find the address of the default route: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
