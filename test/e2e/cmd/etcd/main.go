// Command etcd is stock etcd, built from the etcd server module this repository already
// depends on, so the e2e tests can run it as a separate process without a download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
