// Package cni wires pod network namespaces with CNI plugins (Debian's
// containernetworking-plugins) through github.com/containerd/go-cni: a bridge per node with
// host-local addresses from the node's pod CIDR, and loopback. The host reaches pod IPs over
// the bridge, which holds the CIDR's first address (the pods' gateway).
package cni

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	gocni "github.com/containerd/go-cni"
)

// DefaultPluginDirs are where Debian (/usr/lib/cni) and upstream (/opt/cni/bin) install the
// plugins.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Config configures a node's pod network.
type Config struct {
	// NodeName names the network and, hashed, the bridge (several nodes can share a kernel).
	NodeName string
	// PodCIDR is the node's pod range; pods get addresses from it.
	PodCIDR string
	// BridgeName overrides the bridge's name (default: BridgeNameFor(NodeName)).
	BridgeName string
	// PluginDirs hold the plugin binaries (default DefaultPluginDirs).
	PluginDirs []string
	// DataDir keeps host-local's address leases.
	DataDir string
	// MTU of the bridge and veths (0: the plugin's default).
	MTU int
}

// Network sets up and tears down pod network namespaces.
type Network struct {
	cfg    Config
	cni    gocni.CNI
	Bridge string
}

// BridgeNameFor is the bridge a node's pods attach to: "skiff" and a hash of the node's name,
// within Linux's 15 characters.
func BridgeNameFor(node string) string {
	h := sha256.Sum256([]byte(node))
	return "skf" + hex.EncodeToString(h[:])[:10]
}

// FindPlugins returns the first of dirs that holds the bridge, host-local and loopback
// plugins, or an error naming what is missing.
func FindPlugins(dirs []string) (string, error) {
	if len(dirs) == 0 {
		dirs = DefaultPluginDirs
	}
	for _, d := range dirs {
		ok := true
		for _, p := range []string{"bridge", "host-local", "loopback"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return d, nil
		}
	}
	return "", fmt.Errorf("CNI plugins bridge, host-local and loopback not found in %v (Debian: apt-get install containernetworking-plugins)", dirs)
}

// bridgedTrafficFiltered reports whether iptables filters traffic between ports of a bridge
// (br_netfilter loaded with net.bridge.bridge-nf-call-iptables=1).
func bridgedTrafficFiltered() bool {
	b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// firewallUsable reports whether the firewall plugin is in dir and the iptables command it
// runs is installed.
func firewallUsable(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "firewall")); err != nil {
		return false
	}
	_, err := exec.LookPath("iptables")
	return err == nil
}

// New prepares the node's network configuration (nothing is created until the first pod).
func New(cfg Config) (*Network, error) {
	_, ipnet, err := net.ParseCIDR(cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w", cfg.PodCIDR, err)
	}
	dir, err := FindPlugins(cfg.PluginDirs)
	if err != nil {
		return nil, err
	}
	bridge := cfg.BridgeName
	if bridge == "" {
		bridge = BridgeNameFor(cfg.NodeName)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	gw := gateway(ipnet)
	bridgeConf := map[string]any{
		"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": ipnet.String(), "gateway": gw.String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": filepath.Join(cfg.DataDir, "ipam"),
		},
	}
	if cfg.MTU > 0 {
		bridgeConf["mtu"] = cfg.MTU
	}
	plugins := []any{bridgeConf}
	if bridgedTrafficFiltered() && firewallUsable(dir) {
		// br_netfilter sends bridged packets through iptables' FORWARD chain, and Docker (which
		// loads it) sets that chain's policy to DROP: pods on the bridge could not reach each
		// other, nor a Service whose backend is another pod. The firewall plugin accepts each
		// pod's traffic in FORWARD (its own CNI-FORWARD chain) and removes the rules with the
		// pod. Without the plugin or iptables, pods get no such rules (node images without
		// iptables keep working where nothing filters).
		plugins = append(plugins, map[string]any{"type": "firewall"})
	}
	conflist, err := json.Marshal(map[string]any{
		"cniVersion": "0.4.0", "name": "skiff-" + cfg.NodeName,
		"plugins": plugins,
	})
	if err != nil {
		return nil, err
	}
	c, err := gocni.New(gocni.WithPluginDir([]string{dir}), gocni.WithMinNetworkCount(2),
		gocni.WithInterfacePrefix("eth"))
	if err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	if err := c.Load(gocni.WithLoNetwork, gocni.WithConfListBytes(conflist)); err != nil {
		return nil, fmt.Errorf("cni config: %w", err)
	}
	return &Network{cfg: cfg, cni: c, Bridge: bridge}, nil
}

// gateway is the CIDR's first address, held by the bridge.
func gateway(ipnet *net.IPNet) net.IP {
	ip := make(net.IP, len(ipnet.IP.To4()))
	copy(ip, ipnet.IP.To4())
	ip[3]++
	return ip
}

// Setup attaches the network namespace at nsPath for sandbox id and returns the pod's IP.
func (n *Network) Setup(ctx context.Context, id, nsPath string, labels map[string]string) (string, error) {
	res, err := n.cni.Setup(ctx, id, nsPath, gocni.WithLabels(labels))
	if err != nil {
		return "", fmt.Errorf("cni setup of %s: %w", id, err)
	}
	for _, cfg := range res.Interfaces {
		for _, ipc := range cfg.IPConfigs {
			if ipc.IP.To4() != nil && !ipc.IP.IsLoopback() {
				return ipc.IP.String(), nil
			}
		}
	}
	return "", fmt.Errorf("cni setup of %s: no IPv4 address in the result", id)
}

// Teardown releases what Setup did (idempotent: a namespace already gone is fine).
func (n *Network) Teardown(ctx context.Context, id, nsPath string, labels map[string]string) error {
	if err := n.cni.Remove(ctx, id, nsPath, gocni.WithLabels(labels)); err != nil {
		return fmt.Errorf("cni teardown of %s: %w", id, err)
	}
	return nil
}

// RemoveBridge deletes the node's bridge (tests and node removal; pods must be gone).
func RemoveBridge(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link del %s: %v: %s", name, err, out)
	}
	return nil
}
