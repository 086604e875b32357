//go:build linux

// Package kernel answers what the node agents need to know about the machine's kernel
// before they use it: where cgroup2 is, whether bpffs is mounted (and mounts it), and
// whether this process may load BPF programs.
package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// BPFFS is where bpffs is mounted.
const BPFFS = "/sys/fs/bpf"

const bpffsMagic = 0xcafe4a11

// Cgroup2Root is where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on a pure v2
// system, /sys/fs/cgroup/unified on a hybrid one.
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1], nil
		}
	}
	return "", errors.New("cgroup2 is not mounted")
}

// OwnCgroup is this process's cgroup2 path relative to the root (the "0::" line of
// /proc/self/cgroup): in a container node, the node's own subtree.
func OwnCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("no cgroup2 entry in /proc/self/cgroup")
}

// IsBPFFS reports whether dir is on a bpf filesystem.
func IsBPFFS(dir string) bool {
	var fs unix.Statfs_t
	return unix.Statfs(dir, &fs) == nil && uint32(fs.Type) == bpffsMagic
}

// MountBPFFS mounts bpffs at /sys/fs/bpf unless it is there.
func MountBPFFS() error {
	if IsBPFFS(BPFFS) {
		return nil
	}
	if err := unix.Mount("bpf", BPFFS, "bpf", 0, ""); err != nil {
		return fmt.Errorf("mount -t bpf bpf %s: %w", BPFFS, err)
	}
	return nil
}

// CanLoadBPF says why this process cannot run the socket load balancer, or nil: it needs
// root (CAP_BPF or CAP_SYS_ADMIN, with CAP_NET_ADMIN), cgroup2 and bpffs (mounted here if
// missing).
func CanLoadBPF() error {
	if os.Geteuid() != 0 {
		return errors.New("not root: loading BPF programs and attaching them to cgroups needs root")
	}
	if _, err := Cgroup2Root(); err != nil {
		return fmt.Errorf("no cgroup2 hierarchy: %w", err)
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		// Not needed by the programs themselves, but its absence marks kernels too old
		// for the hooks they use (getpeername4 needs 5.8, bpf_set_retval 5.18).
		return fmt.Errorf("kernel without BTF (/sys/kernel/btf/vmlinux): %w", err)
	}
	return MountBPFFS()
}
