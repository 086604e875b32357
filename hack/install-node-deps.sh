#!/usr/bin/env bash
# Installs, from Debian's packages, what a Skiff node and its tests need: containerd and runc
# (the container runtime; no service is started: the kubelet and the tests start their own
# containerd), the CNI plugins (bridge, host-local, loopback), busybox-static (the test image's
# only binary), iproute2 and iptables. Run as root; it does nothing for packages already installed.
set -euo pipefail
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || need+=(busybox-static)
command -v ip >/dev/null || need+=(iproute2)
# Where br_netfilter filters bridged traffic (Docker loads it), the CNI firewall plugin lets
# pods reach each other through iptables.
command -v iptables >/dev/null || need+=(iptables)
command -v curl >/dev/null || need+=(curl)  # the compose node image carries it for debugging
if [ ${#need[@]} -eq 0 ]; then
  echo "node dependencies present: $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing ${need[*]}; run as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing ${need[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
