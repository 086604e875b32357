#!/usr/bin/env bash
# Mounts bpffs at /sys/fs/bpf when it is not mounted (the service proxy pins its maps and
# links there). Needs root; without root it says so and does nothing (the BPF tests skip).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
	echo "mount-bpffs: not root: BPF tests will be skipped" >&2
	exit 0
fi
if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != "bpf_fs" ]; then
	mkdir -p /sys/fs/bpf
	mount -t bpf bpf /sys/fs/bpf
	echo "mount-bpffs: mounted bpffs at /sys/fs/bpf"
fi
