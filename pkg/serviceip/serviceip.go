// Package serviceip is the service range: Services' cluster IPs come from it (the
// apiserver's allocator, services/apiserver/ipalloc), the proxy refuses its addresses that
// are no service, and the well-known addresses in it (the API's, the DNS's) are computed
// here. It is pure: no storage.
package serviceip

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// DefaultRange is Kubernetes' default service range (--service-cluster-ip-range).
const DefaultRange = "10.96.0.0/12"

// DNSOffset is the position in the range of the cluster DNS Service's address, as kubeadm
// and kubespray pick it: 10.96.0.10 in the default range.
const DNSOffset = 10

// Range is an IPv4 service range. Its network and broadcast addresses are never handed out.
type Range struct {
	prefix netip.Prefix
	base   uint32 // the first usable address
	size   uint32 // how many usable addresses
	// offset is the size of the static band at the start of the range.
	offset uint32
}

// ParseRange reads a CIDR such as 10.96.0.0/12. Only IPv4 is supported (no dual stack); the
// range needs at least 8 addresses (a /29), as Kubernetes requires.
func ParseRange(cidr string) (*Range, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("service cluster IP range %q: %w", cidr, err)
	}
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("service cluster IP range %q: only IPv4 ranges are supported", cidr)
	}
	if p.Bits() > 29 || p.Bits() < 8 {
		return nil, fmt.Errorf("service cluster IP range %q: the prefix length must be between /8 and /29", cidr)
	}
	p = p.Masked()
	total := uint64(1) << (32 - p.Bits())
	r := &Range{prefix: p, base: toUint(p.Addr()) + 1, size: uint32(total - 2)}
	// Kubernetes: min(max(16, size/16), 256).
	r.offset = min(max(16, r.size/16), 256)
	if r.offset >= r.size {
		r.offset = 0
	}
	return r, nil
}

// Base is the first usable address as an integer, Size how many there are, and Offset the
// size of the static band at the start (see package ipalloc).
func (r *Range) Base() uint32   { return r.base }
func (r *Range) Size() uint32   { return r.size }
func (r *Range) Offset() uint32 { return r.offset }

// ToUint and FromUint convert IPv4 addresses to and from integers.
func ToUint(a netip.Addr) uint32   { return toUint(a) }
func FromUint(n uint32) netip.Addr { return fromUint(n) }

// String is the range's CIDR.
func (r *Range) String() string { return r.prefix.String() }

// Prefix is the range's CIDR.
func (r *Range) Prefix() netip.Prefix { return r.prefix }

// Contains reports whether ip may be handed out from the range (inside it, neither its
// network nor its broadcast address).
func (r *Range) Contains(ip netip.Addr) bool {
	if !ip.Is4() || !r.prefix.Contains(ip) {
		return false
	}
	n := toUint(ip)
	return n >= r.base && n < r.base+r.size
}

// Nth is the range's n-th usable address (0 is the first, which Kubernetes gives to the
// `kubernetes` Service).
func (r *Range) Nth(n uint32) (netip.Addr, error) {
	if n >= r.size {
		return netip.Addr{}, fmt.Errorf("range %s has no address number %d", r.prefix, n)
	}
	return fromUint(r.base + n), nil
}

// APIServerIP is the address of the `kubernetes` Service: the range's first.
func (r *Range) APIServerIP() netip.Addr { ip, _ := r.Nth(0); return ip }

// DNSIP is the address of the cluster DNS Service (kube-system/kube-dns): the range's tenth.
func (r *Range) DNSIP() netip.Addr { ip, _ := r.Nth(DNSOffset - 1); return ip }

func toUint(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func fromUint(n uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], n)
	return netip.AddrFrom4(b)
}
