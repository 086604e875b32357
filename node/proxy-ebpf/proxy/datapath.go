//go:build linux

package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// ServicePort is one address a service answers on: the key of the services map.
type ServicePort struct {
	VIP   netip.Addr
	Port  uint16
	Proto Protocol
}

func (sp ServicePort) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(sp.VIP, sp.Port), sp.Proto)
}

// Protocol is an IP protocol number.
type Protocol uint8

// The protocols the datapath balances.
const (
	TCP Protocol = unix.IPPROTO_TCP
	UDP Protocol = unix.IPPROTO_UDP
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// Backend is where a service port's traffic may go.
type Backend = netip.AddrPort

// DatapathConfig configures the BPF side.
type DatapathConfig struct {
	// PinDir is a directory in bpffs where the maps and links are pinned, so that a restarted
	// proxy reuses them and traffic keeps flowing meanwhile. One per node.
	PinDir string
	// CgroupPath is the cgroup2 directory whose sockets (and its descendants') are balanced.
	CgroupPath string
	// ServiceRange is refused where no service answers (the zero Prefix: nothing is).
	ServiceRange netip.Prefix
	Logger       *slog.Logger
}

// Datapath is the loaded BPF programs and maps, attached to a cgroup. Its methods are safe
// for concurrent use.
type Datapath struct {
	cfg   DatapathConfig
	log   *slog.Logger
	objs  lbObjects
	links []link.Link

	mu sync.Mutex
	// programmed mirrors what the maps hold, by service port.
	programmed map[ServicePort]*programmedService
	usedIDs    map[uint32]bool
	nextID     uint32
	// writes counts map entries written or deleted: what a sync cost.
	writes uint64
}

type programmedService struct {
	id       uint32
	backends []Backend
	// slots is how many backend slots the map holds for the id: at least len(backends).
	// Slots a shrinking service no longer counts stay until the service goes, because a
	// program that read the old count may still look one up.
	slots int
}

// programs are the hooks and the programs they run.
func (d *Datapath) programs() []struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
} {
	return []struct {
		name   string
		attach ebpf.AttachType
		prog   *ebpf.Program
	}{
		{"connect4", ebpf.AttachCGroupInet4Connect, d.objs.SkiffConnect4},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, d.objs.SkiffSendmsg4},
		{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg, d.objs.SkiffRecvmsg4},
		{"getpeername4", ebpf.AttachCgroupInet4GetPeername, d.objs.SkiffGetpeername4},
	}
}

// bpffsMagic is BPF_FS_MAGIC.
const bpffsMagic = 0xcafe4a11

// OpenDatapath loads the programs, reusing the maps pinned in cfg.PinDir if there are any
// (a restart), and attaches them to cfg.CgroupPath, replacing the programs of links pinned
// there by an earlier run in place (no moment without a program). It reads what the maps
// hold, so that a sync writes only what differs.
func OpenDatapath(cfg DatapathConfig) (*Datapath, error) {
	d := &Datapath{cfg: cfg, log: cfg.Logger, programmed: map[ServicePort]*programmedService{}, usedIDs: map[uint32]bool{}}
	if d.log == nil {
		d.log = slog.Default()
	}
	if err := os.MkdirAll(cfg.PinDir, 0o700); err != nil {
		return nil, fmt.Errorf("pin directory: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(cfg.PinDir, &fs); err != nil {
		return nil, fmt.Errorf("pin directory %s: %w", cfg.PinDir, err)
	}
	if uint32(fs.Type) != bpffsMagic {
		return nil, fmt.Errorf("pin directory %s is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)", cfg.PinDir)
	}
	err := loadLbObjects(&d.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinDir}})
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		return nil, fmt.Errorf("maps pinned in %s are of another version of the proxy (remove them with --uninstall): %w", cfg.PinDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load BPF programs: %w", err)
	}
	if err := d.attach(); err != nil {
		d.closeAll()
		return nil, err
	}
	if err := d.setRange(cfg.ServiceRange); err != nil {
		d.closeAll()
		return nil, err
	}
	if err := d.readProgrammed(); err != nil {
		d.closeAll()
		return nil, err
	}
	return d, nil
}

// attach links every program to the cgroup, through the links pinned by an earlier run
// when they are on the same cgroup.
func (d *Datapath) attach() error {
	var cgStat unix.Stat_t
	if err := unix.Stat(d.cfg.CgroupPath, &cgStat); err != nil {
		return fmt.Errorf("cgroup %s: %w", d.cfg.CgroupPath, err)
	}
	for _, p := range d.programs() {
		pin := filepath.Join(d.cfg.PinDir, "link_"+p.name)
		if old, err := link.LoadPinnedLink(pin, nil); err == nil {
			info, ierr := old.Info()
			if ierr == nil && info.Cgroup() != nil && info.Cgroup().CgroupId == cgStat.Ino {
				if err := old.Update(p.prog); err != nil {
					old.Close()
					return fmt.Errorf("replace the %s program: %w", p.name, err)
				}
				d.links = append(d.links, old)
				continue
			}
			// Pinned on another cgroup: this proxy now serves a different one.
			_ = old.Unpin()
			old.Close()
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: d.cfg.CgroupPath, Attach: p.attach, Program: p.prog})
		if err != nil {
			return fmt.Errorf("attach %s to cgroup %s: %w", p.name, d.cfg.CgroupPath, err)
		}
		if err := l.Pin(pin); err != nil {
			l.Close()
			return fmt.Errorf("pin the %s link: %w", p.name, err)
		}
		d.links = append(d.links, l)
	}
	return nil
}

func (d *Datapath) setRange(p netip.Prefix) error {
	var cfg lbConfigValue
	if p.IsValid() {
		if !p.Addr().Is4() {
			return fmt.Errorf("service range %s: only IPv4 is supported", p)
		}
		p = p.Masked()
		cfg.Net = addrToNet(p.Addr())
		mask := ^uint32(0) << (32 - p.Bits())
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], mask)
		cfg.Mask = binary.NativeEndian.Uint32(b[:])
	}
	if err := d.objs.SkiffConfig.Put(uint32(0), cfg); err != nil {
		return fmt.Errorf("write the service range: %w", err)
	}
	return nil
}

// addrToNet is an IPv4 address as the kernel holds it (network byte order) read as a
// native integer, as the BPF program sees it.
func addrToNet(a netip.Addr) uint32 { b := a.As4(); return binary.NativeEndian.Uint32(b[:]) }

func netToAddr(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// portToNet is a port in network byte order read as a native integer.
func portToNet(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func netToPort(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func serviceKey(sp ServicePort) lbServiceKey {
	return lbServiceKey{Vip: addrToNet(sp.VIP), Port: portToNet(sp.Port), Proto: uint8(sp.Proto)}
}

func backendValue(b Backend) lbBackendValue {
	return lbBackendValue{Ip: addrToNet(b.Addr()), Port: portToNet(b.Port())}
}

func statsKey(id uint32, b Backend) lbStatsKey {
	return lbStatsKey{Id: id, Ip: addrToNet(b.Addr()), Port: portToNet(b.Port())}
}

// readProgrammed fills the mirror from the maps (after a restart they hold the last run's
// state). Slots of ids no service uses (an interrupted write) are deleted.
func (d *Datapath) readProgrammed() error {
	var (
		sk lbServiceKey
		sv lbServiceValue
	)
	byID := map[uint32]*programmedService{}
	it := d.objs.SkiffServices.Iterate()
	for it.Next(&sk, &sv) {
		sp := ServicePort{VIP: netToAddr(sk.Vip), Port: netToPort(sk.Port), Proto: Protocol(sk.Proto)}
		ps := &programmedService{id: sv.Id, backends: make([]Backend, sv.Count), slots: int(sv.Count)}
		d.programmed[sp] = ps
		d.usedIDs[sv.Id] = true
		byID[sv.Id] = ps
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the services map: %w", err)
	}
	var (
		bk    lbBackendKey
		bv    lbBackendValue
		stale []lbBackendKey
	)
	bit := d.objs.SkiffBackends.Iterate()
	for bit.Next(&bk, &bv) {
		ps := byID[bk.Id]
		if ps == nil {
			stale = append(stale, bk)
			continue
		}
		ps.slots = max(ps.slots, int(bk.Slot)+1)
		if bk.Slot < uint32(len(ps.backends)) {
			ps.backends[bk.Slot] = netip.AddrPortFrom(netToAddr(bv.Ip), netToPort(bv.Port))
		}
	}
	if err := bit.Err(); err != nil {
		return fmt.Errorf("read the backends map: %w", err)
	}
	if len(stale) > 0 {
		if _, err := d.objs.SkiffBackends.BatchDelete(stale, nil); err != nil {
			return fmt.Errorf("delete stale backend slots: %w", err)
		}
	}
	// A slot missing (an interrupted write) reads as the zero backend: the next sync
	// rewrites it, since it differs from any real one.
	return nil
}

// allocID returns a service id no service port uses.
func (d *Datapath) allocID() (uint32, error) {
	for range maxServices {
		id := d.nextID
		d.nextID = (d.nextID + 1) % maxServices
		if !d.usedIDs[id] {
			d.usedIDs[id] = true
			return id, nil
		}
	}
	return 0, fmt.Errorf("more than %d service ports", maxServices)
}

// maxServices is MAX_SERVICES of lb.c.
const maxServices = 65536

// Apply makes the maps hold changes: each service port gets exactly the listed backends, in
// that order of rotation (an empty list: the port is refused); a nil list removes the port.
// Only entries that differ from what the maps hold are written, in batches, in an order
// that keeps every lookup the programs make valid: new backend slots before the count that
// includes them; slots a smaller count drops stay (a program may have read the old count)
// until the service port goes.
func (d *Datapath) Apply(changes map[ServicePort][]Backend) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	total := 0
	for _, bs := range changes {
		total += len(bs)
	}
	var (
		bKeys          = make([]lbBackendKey, 0, total)
		bVals          = make([]lbBackendValue, 0, total)
		sKeys          = make([]lbServiceKey, 0, len(changes))
		sVals          = make([]lbServiceValue, 0, len(changes))
		delB           []lbBackendKey
		delS           []lbServiceKey
		delStats       []lbStatsKey
		freed          []uint32
		nextProgrammed = make(map[ServicePort]*programmedService, len(changes))
		removed        []ServicePort
	)
	for sp, backends := range changes {
		cur := d.programmed[sp]
		if backends == nil {
			if cur == nil {
				continue
			}
			delS = append(delS, serviceKey(sp))
			for slot := range cur.slots {
				delB = append(delB, lbBackendKey{Id: cur.id, Slot: uint32(slot)})
			}
			for _, b := range cur.backends {
				delStats = append(delStats, statsKey(cur.id, b))
			}
			freed = append(freed, cur.id)
			removed = append(removed, sp)
			continue
		}
		next := &programmedService{backends: slices.Clone(backends), slots: len(backends)}
		if cur != nil {
			next.id = cur.id
			next.slots = max(next.slots, cur.slots)
		} else {
			id, err := d.allocID()
			if err != nil {
				return err
			}
			next.id = id
		}
		var old []Backend
		if cur != nil {
			old = cur.backends
		}
		for slot, b := range backends {
			if slot < len(old) && old[slot] == b {
				continue
			}
			bKeys = append(bKeys, lbBackendKey{Id: next.id, Slot: uint32(slot)})
			bVals = append(bVals, backendValue(b))
		}
		for _, b := range old {
			if !slices.Contains(backends, b) {
				delStats = append(delStats, statsKey(next.id, b))
			}
		}
		if cur == nil || len(old) != len(backends) {
			sKeys = append(sKeys, serviceKey(sp))
			sVals = append(sVals, lbServiceValue{Id: next.id, Count: uint32(len(backends))})
		}
		nextProgrammed[sp] = next
	}

	if len(bKeys) > 0 {
		if _, err := d.objs.SkiffBackends.BatchUpdate(bKeys, bVals, nil); err != nil {
			return fmt.Errorf("write %d backend slots: %w", len(bKeys), err)
		}
	}
	if len(sKeys) > 0 {
		if _, err := d.objs.SkiffServices.BatchUpdate(sKeys, sVals, nil); err != nil {
			return fmt.Errorf("write %d services: %w", len(sKeys), err)
		}
	}
	if err := batchDeleteExisting(d.objs.SkiffServices, delS); err != nil {
		return fmt.Errorf("delete services: %w", err)
	}
	if err := batchDeleteExisting(d.objs.SkiffBackends, delB); err != nil {
		return fmt.Errorf("delete backend slots: %w", err)
	}
	if err := batchDeleteExisting(d.objs.SkiffStats, delStats); err != nil {
		return fmt.Errorf("delete backend counters: %w", err)
	}
	d.writes += uint64(len(bKeys) + len(sKeys) + len(delS) + len(delB) + len(delStats))
	for sp, ps := range nextProgrammed {
		d.programmed[sp] = ps
	}
	for _, sp := range removed {
		delete(d.programmed, sp)
	}
	for _, id := range freed {
		delete(d.usedIDs, id)
	}
	return nil
}

// batchDeleteExisting deletes keys, some of which may be gone already.
func batchDeleteExisting[K any](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchDelete(keys, nil); err == nil || !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

// Programmed returns what the maps hold: every service port and its backends in rotation
// order.
func (d *Datapath) Programmed() map[ServicePort][]Backend {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[ServicePort][]Backend, len(d.programmed))
	for sp, ps := range d.programmed {
		out[sp] = slices.Clone(ps.backends)
	}
	return out
}

// Lookup reads a service port's backends from the kernel's maps (not the mirror): what the
// programs see.
func (d *Datapath) Lookup(sp ServicePort) ([]Backend, bool, error) {
	var sv lbServiceValue
	if err := d.objs.SkiffServices.Lookup(serviceKey(sp), &sv); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, false, nil
		}
		return nil, false, err
	}
	out := make([]Backend, 0, sv.Count)
	for slot := range sv.Count {
		var bv lbBackendValue
		if err := d.objs.SkiffBackends.Lookup(lbBackendKey{Id: sv.Id, Slot: slot}, &bv); err != nil {
			return nil, true, fmt.Errorf("slot %d of %s: %w", slot, sp, err)
		}
		out = append(out, netip.AddrPortFrom(netToAddr(bv.Ip), netToPort(bv.Port)))
	}
	return out, true, nil
}

// Writes counts the map entries written or deleted since the datapath was opened.
func (d *Datapath) Writes() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// BackendCount is the traffic one backend of one service port got: connections, or
// datagrams of unconnected UDP sockets.
type BackendCount struct {
	Service ServicePort
	Backend Backend
	Count   uint64
}

// Counts reads every backend's counter (summed over CPUs).
func (d *Datapath) Counts() ([]BackendCount, error) {
	d.mu.Lock()
	byID := make(map[uint32]ServicePort, len(d.programmed))
	for sp, ps := range d.programmed {
		byID[ps.id] = sp
	}
	d.mu.Unlock()
	var (
		k      lbStatsKey
		perCPU []uint64
		out    []BackendCount
	)
	it := d.objs.SkiffStats.Iterate()
	for it.Next(&k, &perCPU) {
		sp, ok := byID[k.Id]
		if !ok {
			continue
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out = append(out, BackendCount{Service: sp, Backend: netip.AddrPortFrom(netToAddr(k.Ip), netToPort(k.Port)), Count: sum})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read backend counters: %w", err)
	}
	return out, nil
}

// Close releases this process's handles; the programs stay attached and the maps stay
// pinned, so traffic keeps being balanced until the next run takes over (or Uninstall).
func (d *Datapath) Close() error {
	d.closeAll()
	return nil
}

func (d *Datapath) closeAll() {
	for _, l := range d.links {
		l.Close()
	}
	d.links = nil
	d.objs.Close()
}

// Uninstall detaches the programs and removes the pinned links and maps: service addresses
// are no longer balanced (nor refused) on this cgroup.
func (d *Datapath) Uninstall() error {
	var errs []error
	for _, l := range d.links {
		if err := l.Unpin(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, m := range []*ebpf.Map{d.objs.SkiffServices, d.objs.SkiffBackends, d.objs.SkiffRr, d.objs.SkiffRevnat,
		d.objs.SkiffStats, d.objs.SkiffConfig} {
		if m != nil {
			if err := m.Unpin(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.closeAll()
	_ = os.Remove(d.cfg.PinDir)
	return errors.Join(errs...)
}
