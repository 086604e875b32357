// Package ipalloc hands out Services' cluster IPs from a range, as Kubernetes' service IP
// allocator does, keeping each allocation in etcd: one key per allocated address, outside the
// registry prefix (the event bus never sees it), created in the same transaction as the
// Service that holds it and deleted in the same transaction as the Service's removal. So no
// state lives in an apiserver's memory: a restart, or several apiservers on one etcd, can
// never hand out an address twice (the transaction that creates an address key compares that
// it does not exist yet).
//
// The range is split as Kubernetes splits it (KEP-3070): addresses below Offset are the
// static band, which dynamic allocation uses only once the upper band is full, so that the
// well-known addresses users and the system ask for (the DNS service's .10) stay free.
package ipalloc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/skiff-project/skiff/pkg/serviceip"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// ErrFull is an allocation from a range with no free address.
var ErrFull = errors.New("range is full")

// KeyPrefix is where allocated addresses of the registry under registryPrefix are kept.
func KeyPrefix(registryPrefix string) string { return "/skiff/clusterips" + registryPrefix + "/" }

// Range is a service range (package serviceip).
type Range = serviceip.Range

// DefaultRange is Kubernetes' default service range.
const DefaultRange = serviceip.DefaultRange

// ParseRange reads a service range (serviceip.ParseRange).
func ParseRange(cidr string) (*Range, error) { return serviceip.ParseRange(cidr) }

// Allocator hands out addresses of one range. It holds no state but the range: etcd has the
// allocations.
type Allocator struct {
	rng    *Range
	store  *storage.Store
	prefix string
}

// New returns an allocator of rng whose allocation keys live under KeyPrefix(registryPrefix).
func New(rng *Range, store *storage.Store, registryPrefix string) *Allocator {
	return &Allocator{rng: rng, store: store, prefix: KeyPrefix(registryPrefix)}
}

// Range is the allocator's range.
func (a *Allocator) Range() *Range { return a.rng }

// Key is the etcd key that marks ip as allocated.
func (a *Allocator) Key(ip netip.Addr) string { return a.prefix + ip.String() }

// IsKey reports whether key is one of the allocator's keys.
func (a *Allocator) IsKey(key string) bool { return strings.HasPrefix(key, a.prefix) }

// Owner is the value of an allocation key: the Service that holds the address.
func Owner(namespace, name string) string { return namespace + "/" + name }

// randomTries is how many random picks are tried before the allocated set is read to pick
// among what is left: in a sparse range a random pick almost always succeeds at once.
const randomTries = 4

// Picker proposes addresses for one dynamic allocation; the caller tries each in its write's
// transaction and asks again after a collision.
type Picker struct {
	a     *Allocator
	tried map[uint32]bool
	free  []uint32 // read from etcd once random picks kept colliding
	read  bool
}

// Picker starts a dynamic allocation.
func (a *Allocator) Picker() *Picker { return &Picker{a: a, tried: map[uint32]bool{}} }

// Next proposes an address not proposed before: random ones in the upper band first; after
// a few collisions, a random one among those etcd does not hold (upper band first). ErrFull
// when none is left.
func (p *Picker) Next(ctx context.Context) (netip.Addr, error) {
	r := p.a.rng
	if len(p.tried) < randomTries && !p.read {
		for range 16 {
			n := r.Offset() + rand.Uint32N(r.Size()-r.Offset())
			if !p.tried[n] {
				p.tried[n] = true
				return serviceip.FromUint(r.Base() + n), nil
			}
		}
	}
	if !p.read {
		if err := p.readFree(ctx); err != nil {
			return netip.Addr{}, err
		}
	}
	for len(p.free) > 0 {
		n := p.free[0]
		p.free = p.free[1:]
		if !p.tried[n] {
			p.tried[n] = true
			return serviceip.FromUint(r.Base() + n), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("allocate a cluster IP from %s: %w", r.Prefix(), ErrFull)
}

// readFree lists the allocated addresses and keeps the free ones, shuffled, the upper band's
// before the static band's.
func (p *Picker) readFree(ctx context.Context) error {
	r := p.a.rng
	used := map[uint32]bool{}
	start, end := p.a.prefix, storage.PrefixEnd(p.a.prefix)
	for {
		page, err := p.a.store.Range(ctx, start, end, 0, 10000, storage.ReadOptions{})
		if err != nil {
			return fmt.Errorf("read allocated cluster IPs: %w", err)
		}
		for _, kv := range page.KVs {
			if ip, err := netip.ParseAddr(strings.TrimPrefix(kv.Key, p.a.prefix)); err == nil && r.Contains(ip) {
				used[serviceip.ToUint(ip)-r.Base()] = true
			}
		}
		if !page.More || len(page.KVs) == 0 {
			break
		}
		start = page.KVs[len(page.KVs)-1].Key + "\x00"
	}
	var upper, lower []uint32
	for n := uint32(0); n < r.Size(); n++ {
		switch {
		case used[n] || p.tried[n]:
		case n >= r.Offset():
			upper = append(upper, n)
		default:
			lower = append(lower, n)
		}
	}
	rand.Shuffle(len(upper), func(i, j int) { upper[i], upper[j] = upper[j], upper[i] })
	rand.Shuffle(len(lower), func(i, j int) { lower[i], lower[j] = lower[j], lower[i] })
	p.free = append(upper, lower...)
	p.read = true
	return nil
}
