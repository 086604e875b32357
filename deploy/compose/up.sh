#!/usr/bin/env bash
# make compose-up: builds the images (deploy/compose/build-images.sh; `make images` for the
# demo's), starts the compose deployment and returns once both nodes are Ready.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s.%N)
project=${SKIFF_COMPOSE_PROJECT:-skiff}
compose=(docker-compose -p "$project" -f deploy/compose/docker-compose.yml)
if ! ls bin/images/*.tar >/dev/null 2>&1; then
	go run ./hack/build-images -out bin/images
fi
deploy/compose/build-images.sh
"${compose[@]}" up -d --remove-orphans
# The wait is for the cluster, not for the image build above (minutes on a cold machine).
up=$(date +%s.%N)
skiff=(bin/compose/node/skiff --server 127.0.0.1:19090,127.0.0.1:19091 --request-timeout 5s)
timeout=${SKIFF_COMPOSE_TIMEOUT:-180}
while :; do
	ready=$("${skiff[@]}" get nodes 2>/dev/null | awk '$1 ~ /^node[12]$/ && $2 == "Ready"' | wc -l || true)
	[ "$ready" = 2 ] && break
	if awk -v s="$up" -v t="$timeout" -v now="$(date +%s.%N)" 'BEGIN {exit !(now - s > t)}'; then
		echo "compose: nodes not Ready ${timeout}s after the containers started:" >&2
		"${skiff[@]}" get nodes >&2 || true
		"${compose[@]}" ps >&2
		"${compose[@]}" logs --tail 20 apiserver1 apiserver2 node1 node2 >&2
		exit 1
	fi
	sleep 1
done
"${skiff[@]}" get nodes
awk -v s="$start" -v u="$up" -v now="$(date +%s.%N)" 'BEGIN {printf "compose: up, both nodes Ready in %.1f s (%.1f s after the containers started)\n", now - s, now - u}'
echo "compose: skiff --server 127.0.0.1:19090,127.0.0.1:19091 apply -f deploy/examples/demo.yaml"
