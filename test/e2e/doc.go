// Package e2e holds end-to-end tests that run Skiff's servers as real, separate processes
// (stock etcd, stock NATS, the apiserver binary) and break them the way production does: kill
// -9, restarts, retention running out. The tests build the binaries themselves; a plain
// `go test ./test/e2e/` runs them.
package e2e
