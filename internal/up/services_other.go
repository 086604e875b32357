//go:build !linux

package up

import (
	"context"
	"fmt"
	"io"

	"github.com/skiff-project/skiff/internal/component"
)

// serviceComponents: the service proxy (eBPF on cgroup2) and the DNS that pods reach through
// it need Linux.
func serviceComponents(o Options, _ *component.Env, out io.Writer) (map[string]func(context.Context) error, string) {
	if out != nil && (o.Proxy || o.DNSAddr != "") {
		fmt.Fprintln(out, "  proxy, DNS: off: they need Linux (eBPF on cgroup2)")
	}
	return nil, ""
}
