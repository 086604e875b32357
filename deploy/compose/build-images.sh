#!/usr/bin/env bash
# Builds the images of the compose deployment with no registry and no base image:
#   skiff-control:dev  FROM scratch: static (CGO_ENABLED=0) apiserver, scheduler, rs-controller,
#                      endpoints, dns, stock etcd (etcdmain, test/e2e/cmd/etcd) and stock
#                      nats-server, all built from this module's go.mod;
#   skiff-node:dev     a root assembled here from the host's Debian containerd, runc, CNI
#                      plugins, curl, ip and busybox-static, the libraries `ldd` lists, and the
#                      static kubelet, proxy-ebpf and skiff CLI (hack/install-node-deps.sh
#                      installs the Debian packages).
# Docker's build cache keeps an unchanged image: a rebuild from a built tree takes seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${SKIFF_COMPOSE_BUILD:-bin/compose}
tag=${SKIFF_COMPOSE_TAG:-dev}
mkdir -p "$out/control" "$out/node" "$out/node-image"
image() { # tag, context: docker build, quiet unless it fails
	local log
	if ! log=$(docker build -q -t "$1" "$2" 2>&1); then
		echo "$log" >&2
		exit 1
	fi
	echo "compose: built $1"
}

echo "compose: building static binaries into $out"
CGO_ENABLED=0 go build -o "$out/control/" \
	./services/apiserver ./services/scheduler ./services/rs-controller ./services/endpoints ./services/dns \
	./test/e2e/cmd/etcd github.com/nats-io/nats-server/v2
CGO_ENABLED=0 go build -o "$out/node/" ./node/kubelet ./node/proxy-ebpf ./cmd/skiff

cat >"$out/control/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY apiserver scheduler rs-controller endpoints dns etcd nats-server /usr/local/bin/
ENV PATH=/usr/local/bin
DOCKERFILE
image "skiff-control:$tag" "$out/control"

# The node's root: each program with the shared libraries it loads, at the same paths.
root="$out/node-image/root"
rm -rf "$root"
mkdir -p "$root"/{bin,usr/local/bin,etc,tmp,run,var/lib,sys,proc,dev}
chmod 1777 "$root/tmp"
need() { # copy files (following links) to the same paths under the root, with their libraries
	local f
	for f in "$@"; do
		[ -e "$f" ] || { echo "compose: $f is missing (hack/install-node-deps.sh installs the node's Debian packages)" >&2; exit 1; }
	done
	{
		printf '%s\n' "$@"
		ldd "$@" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3} !/=>/ && $1 ~ /^\// && $1 !~ /:$/ {print $1}'
	} | sort -u | xargs cp -L --parents -t "$root"
}
# Few processes: on a loaded machine each fork counts.
need /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 /usr/sbin/runc /usr/bin/ctr /usr/bin/curl /usr/sbin/ip \
	/usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback /usr/lib/cni/portmap \
	/usr/sbin/xtables-nft-multi
# iptables (nf_tables) masquerades pod traffic that leaves the pod network (to DNS, say); its
# extensions need only libxtables and libc, which xtables-nft-multi brings
mkdir -p "$root/usr/lib/x86_64-linux-gnu"
cp -r /usr/lib/x86_64-linux-gnu/xtables "$root/usr/lib/x86_64-linux-gnu/xtables"
ln -sf xtables-nft-multi "$root/usr/sbin/iptables"
cp /bin/busybox "$root/bin/busybox"
# busybox's applets as links (one perl, not a process per link)
(cd "$root/bin" && ./busybox --list | perl -nle 'symlink("busybox", $_) or die "$_: $!" unless $_ eq "busybox"')
cp "$out/node/kubelet" "$out/node/proxy-ebpf" "$out/node/skiff" "$root/usr/local/bin/"
cp deploy/compose/node-entrypoint.sh "$root/usr/local/bin/node-entrypoint"
chmod 755 "$root/usr/local/bin/node-entrypoint"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"

cat >"$out/node-image/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY root/ /
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/local/bin/node-entrypoint"]
DOCKERFILE
image "skiff-node:$tag" "$out/node-image"
