#!/usr/bin/env bash
# Builds the peer binaries of `make bench-peer` (kube-apiserver, kube-scheduler and kube-reader,
# from k8s.io/kubernetes in the separate module test/peer/kube) once, and reuses them: each is
# cached under ${SKIFF_PEER_CACHE:-~/.cache/skiff-peer}/<hash of go.mod, go.sum and its main>/.
# The first build is long on two cores (79 minutes here under heavy load); it runs under nice.
# Usage: hack/build-peer.sh [name...]   prints "name=path" for each binary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/test/peer/kube"
cache="${SKIFF_PEER_CACHE:-$HOME/.cache/skiff-peer}"
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(kube-apiserver kube-scheduler kube-reader)
for name in "${names[@]}"; do
	[ -d "$mod/cmd/$name" ] || { echo "build-peer: no command $name in $mod/cmd" >&2; exit 1; }
	# go.mod's lines sorted and without "// indirect": what tidy only rearranges does not rebuild.
	hash="$( (sed 's, *// indirect,,' "$mod/go.mod" | sort; cat "$mod/go.sum" "$mod"/cmd/"$name"/*.go) | sha256sum | cut -c1-16)"
	out="$cache/$hash/$name"
	if [ ! -x "$out" ]; then
		mkdir -p "$cache/$hash"
		echo "build-peer: building $name (cached at $out)" >&2
		(cd "$mod" && nice -n 19 go build -o "$out.tmp" "./cmd/$name") && mv "$out.tmp" "$out"
	fi
	echo "$name=$out"
done
