// Command kube-apiserver is the stock Kubernetes API server, built from k8s.io/kubernetes as
// the peer Skiff's apiserver is measured against (make bench-peer).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
