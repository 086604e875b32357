#!/usr/bin/env bash
# What `make generate-bpf` needs to recompile the proxy's BPF programs: clang (14 needs
# -mcpu=v3 for atomic fetch-add, set in gen.go), llvm-strip and libbpf's headers. Building
# and testing need none of it: the compiled objects are committed.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq clang llvm libbpf-dev
