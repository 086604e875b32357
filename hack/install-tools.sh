#!/usr/bin/env bash
# Installs the pinned code generators that `make generate` uses. Everything comes from the Go
# module proxy: no remote buf registry or plugin is needed.
set -euo pipefail
export GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
install() { # $1 = binary name, $2 = module@version
  if [ -x "$GOBIN/$1" ] && [ -f "$GOBIN/.$1.version" ] && [ "$(cat "$GOBIN/.$1.version")" = "$2" ]; then return; fi
  echo "installing $2" >&2
  go install "$2"
  echo "$2" >"$GOBIN/.$1.version"
}
install buf github.com/bufbuild/buf/cmd/buf@v1.75.0
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
install protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.33.0
install protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.33.0
