// Package clientgo holds the tests that run Kubernetes' own client library, client-go, and
// k8s.io/apimachinery against Skiff: an informer and lister program against a Skiff test
// server, and differential tests of Skiff's parsers and JSON shapes against Kubernetes'. It
// is a module of its own so that the main module never depends on k8s.io.
package clientgo
