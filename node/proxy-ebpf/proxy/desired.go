package proxy

import (
	"net/netip"
	"slices"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// desiredPort is what one service port should be programmed as.
type desiredPort struct {
	name     string // the service port's name (metrics)
	backends []netip.AddrPort
}

// desiredPorts is what a Service and its Endpoints ask of the datapath, as kube-proxy reads
// them: each port of a Service with a cluster IP is balanced across the ready addresses of
// the Endpoints subsets that carry a port of the same name and protocol, at that port's
// number (the Endpoints controller has resolved the targetPort there). Not-ready addresses
// get no traffic. Headless and ExternalName services, and addresses other than IPv4, are
// not balanced; neither is SCTP.
func desiredPorts(svc *corev1.Service, ep *corev1.Endpoints) map[ServicePort]desiredPort {
	spec := svc.GetSpec()
	if spec.GetType() == "ExternalName" {
		return nil
	}
	vip, err := netip.ParseAddr(spec.GetClusterIp())
	if err != nil || !vip.Is4() {
		return nil
	}
	out := map[ServicePort]desiredPort{}
	for _, port := range spec.GetPorts() {
		proto, ok := protocolOf(port.GetProtocol())
		if !ok || port.GetPort() <= 0 || port.GetPort() > 65535 {
			continue
		}
		sp := ServicePort{VIP: vip, Port: uint16(port.GetPort()), Proto: proto}
		backends := []netip.AddrPort{}
		for _, subset := range ep.GetSubsets() {
			for _, epPort := range subset.GetPorts() {
				epProto, ok := protocolOf(epPort.GetProtocol())
				if !ok || epProto != proto || epPort.GetName() != port.GetName() || epPort.GetPort() <= 0 || epPort.GetPort() > 65535 {
					continue
				}
				for _, addr := range subset.GetAddresses() {
					ip, err := netip.ParseAddr(addr.GetIp())
					if err != nil || !ip.Is4() {
						continue
					}
					backends = append(backends, netip.AddrPortFrom(ip, uint16(epPort.GetPort())))
				}
			}
		}
		// A stable order: the rotation does not jump when the Endpoints list them anew.
		slices.SortFunc(backends, func(a, b netip.AddrPort) int { return a.Compare(b) })
		out[sp] = desiredPort{name: port.GetName(), backends: slices.Compact(backends)}
	}
	return out
}

func protocolOf(p string) (Protocol, bool) {
	switch p {
	case "TCP", "":
		return TCP, true
	case "UDP":
		return UDP, true
	}
	return 0, false
}
