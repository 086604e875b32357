#!/usr/bin/env bash
# Regenerates pkg/codec/kubeproto/kube.binpb.gz: the protobuf descriptors (with their comments)
# of the Kubernetes API types Skiff serves, built from k8s.io/api and k8s.io/apimachinery's
# generated.proto at the versions the client-go test module (test/clientgo) pins. The main
# module never imports k8s.io: it reads Kubernetes' protobuf request bodies (kubectl's typed
# clients send them) and the API's descriptions through these descriptors.
set -euo pipefail
cd "$(dirname "$0")/.."
api=$(cd test/clientgo && go list -m -f '{{.Dir}}' k8s.io/api)
machinery=$(cd test/clientgo && go list -m -f '{{.Dir}}' k8s.io/apimachinery)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
copy() { mkdir -p "$work/$2"; cp "$1/generated.proto" "$work/$2/"; }
for g in core/v1 apps/v1 coordination/v1 autoscaling/v1; do copy "$api/$g" "k8s.io/api/$g"; done
for p in pkg/apis/meta/v1 pkg/runtime pkg/runtime/schema pkg/util/intstr pkg/api/resource; do
  copy "$machinery/$p" "k8s.io/apimachinery/$p"
done
(cd "$work" && buf build . -o "$work/kube.binpb")
gzip -9 -n -c "$work/kube.binpb" > pkg/codec/kubeproto/kube.binpb.gz
