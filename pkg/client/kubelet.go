package client

import (
	"fmt"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// KubeletAPI returns the client of the apiserver's KubeletAPI service (pods' logs, exec,
// image loads, forwarded to the kubelets) on c's connection. Only a gRPC client has it; over
// REST, logs are GET pods/NAME/log (see LogsURL) and exec is not available.
func KubeletAPI(c Interface) (corev1.KubeletAPIClient, error) {
	g, ok := c.(*grpcClient)
	if !ok {
		return nil, fmt.Errorf("exec and image loads need the gRPC API: use a host:port --server, not an http(s):// URL")
	}
	return corev1.NewKubeletAPIClient(g.conn), nil
}
