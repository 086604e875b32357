// Package openapi embeds the OpenAPI v2 document that `make generate` produces from proto/.
package openapi

import _ "embed"

// V2 is the OpenAPI (Swagger 2.0) document of the REST API, served at /openapi/v2.
//
//go:embed skiff.swagger.json
var V2 []byte
