// Command kube-scheduler is the stock Kubernetes scheduler, built from k8s.io/kubernetes as the
// peer Skiff's scheduler is measured against (make bench-peer).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
