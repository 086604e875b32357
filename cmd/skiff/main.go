// Command skiff is the Skiff command line, a kubectl-like client; the commands live in
// package cli so that other binaries and tests can build the same command tree.
package main

import (
	"os"

	"github.com/skiff-project/skiff/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
