#!/bin/sh
# The init of a compose node (like a kind node): it runs the kubelet (which starts its own
# containerd) and proxy-ebpf, with the node's pods under this container's own cgroup and the
# proxy's programs attached there, so they balance this node's processes and pods only.
#
# Environment (the compose file sets it; SKIFF_SERVER and SKIFF_NATS_URL reach both programs):
#   SKIFF_NODE_NAME     the Node's name (default: the host name)
#   SKIFF_NODE_IP       the node's InternalIP (default: the kubelet's detection)
#   SKIFF_POD_CIDR      this node's pod range
#   SKIFF_POD_ROUTES    other nodes' pod ranges, "CIDR=NODE_IP,..." (routes through them)
#   SKIFF_CLUSTER_CIDR  all nodes' pod ranges: pod traffic leaving it is masqueraded, so that
#                       containers outside the pod network (DNS) can answer pods
#   SKIFF_KUBELET_ARGS, SKIFF_PROXY_ARGS  extra flags of each program
set -eu

name=${SKIFF_NODE_NAME:-$(hostname)}
cg=$(sed -n 's/^0:://p' /proc/self/cgroup) # /docker/<id>: the node's cgroup2 path
unified=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
[ -n "$cg" ] && [ -n "$unified" ] || { echo "node: no cgroup2 path (is /sys/fs/cgroup bound rw?)" >&2; exit 1; }

for r in $(echo "${SKIFF_POD_ROUTES:-}" | tr ',' ' '); do
	ip route replace "${r%%=*}" via "${r#*=}"
done
if [ -n "${SKIFF_CLUSTER_CIDR:-}" ]; then
	iptables -t nat -A POSTROUTING -s "$SKIFF_CLUSTER_CIDR" ! -d "$SKIFF_CLUSTER_CIDR" -j MASQUERADE || {
		echo "node: cannot masquerade pod traffic (iptables failed): pods could not reach DNS" >&2
		exit 1
	}
fi

# Pods' cgroups live below ours; on stop they are removed, or they would outlive the container.
cleanup() {
	kill "$kubelet" "$proxy" 2>/dev/null || true
	sleep 2
	kill -9 -1 2>/dev/null || true # the pods and their shims
	sleep 1
	for d in /sys/fs/cgroup/*/"$cg"/skiff "$unified/$cg/skiff"; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	exit 0
}
kubelet= proxy=
trap cleanup TERM INT

ip_flag=
[ -n "${SKIFF_NODE_IP:-}" ] && ip_flag="--node-ip=$SKIFF_NODE_IP"
cidr_flag=
[ -n "${SKIFF_POD_CIDR:-}" ] && cidr_flag="--pod-cidr=$SKIFF_POD_CIDR"

# shellcheck disable=SC2086 # the *_ARGS are word lists
proxy-ebpf --node-name="$name" --cgroup="$unified$cg" ${SKIFF_PROXY_ARGS:-} &
proxy=$!
# shellcheck disable=SC2086
kubelet --hostname-override="$name" $ip_flag $cidr_flag --cgroup-parent="$cg/skiff" \
	--root-dir=/var/lib/skiff/kubelet --containerd-dir=/var/lib/skiff/containerd ${SKIFF_KUBELET_ARGS:-} &
kubelet=$!

# Either program ending ends the node (Docker's restart policy decides what next).
while kill -0 "$kubelet" 2>/dev/null && kill -0 "$proxy" 2>/dev/null; do
	sleep 1
done
echo "node: kubelet or proxy-ebpf exited" >&2
cleanup
