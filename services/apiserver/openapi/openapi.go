// Package openapi builds the OpenAPI documents the apiserver serves (Build: /openapi/v2 and
// /openapi/v3 in Kubernetes' form) and embeds the Swagger document that `make generate`
// produces from proto/ for the gRPC-gateway routes.
package openapi

import _ "embed"

// V2 is protoc-gen-openapiv2's Swagger 2.0 document of the gateway's routes, kept with the
// generated code; kubectl and client-go read Build's documents instead.
//
//go:embed skiff.swagger.json
var V2 []byte
