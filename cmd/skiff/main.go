// Command skiff is the Skiff command line, a kubectl-like client, plus `skiff up`, the whole
// control plane in one process. The commands live in internal/cli and internal/up.
package main

import (
	"os"

	"github.com/skiff-project/skiff/internal/cli"
	"github.com/skiff-project/skiff/internal/up"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], up.NewCommand()))
}
