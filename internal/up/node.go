package up

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiff-project/skiff/internal/component"
	"github.com/skiff-project/skiff/node/kubelet/cni"
	"github.com/skiff-project/skiff/node/kubelet/kubelet"
	ctrd "github.com/skiff-project/skiff/node/kubelet/runtime/containerd"
	"github.com/skiff-project/skiff/pkg/record"
)

// localNode is the node `skiff up` runs beside the control plane: a containerd it starts
// itself (root, state and socket under --data-dir) and a kubelet on it, in this process.
type localNode struct {
	name    string
	podCIDR string
	daemon  *ctrd.Daemon
	rt      *ctrd.Runtime
	log     *slog.Logger
	// images are the names of the images preloaded from Options.ImagesDir; imagesNote says
	// why none were, if so.
	images     []string
	imagesNote string
}

// localNodeMissing says what the host lacks for a local node ("" when nothing).
func localNodeMissing() string {
	missing := ctrd.Requirements()
	if _, err := cni.FindPlugins(nil); err != nil {
		missing = append(missing, "CNI plugins bridge, host-local and loopback (Debian: apt-get install containernetworking-plugins)")
	}
	return strings.Join(missing, "; ")
}

// startLocalNode starts containerd for the local node; the kubelet runs in runComponents.
func startLocalNode(ctx context.Context, o Options, log *slog.Logger) (*localNode, error) {
	name := o.NodeName
	if name == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "skiff-node"
		}
		name = strings.ToLower(host)
	}
	cidr := o.PodCIDR
	if _, ipnet, err := net.ParseCIDR(cidr); err != nil {
		return nil, fmt.Errorf("--pod-cidr %q: %w", cidr, err)
	} else if conflict := addressIn(ipnet); conflict != "" && conflict != cni.BridgeNameFor(name) {
		return nil, fmt.Errorf("--pod-cidr %s overlaps the addresses of interface %s; choose another", cidr, conflict)
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, err
	}
	n := &localNode{name: name, podCIDR: cidr, log: log.With("component", "local-node")}
	n.daemon, err = ctrd.StartDaemon(ctx, ctrd.DaemonConfig{Dir: filepath.Join(dir, "containerd"), Logger: n.log})
	if err != nil {
		return nil, err
	}
	n.rt, err = ctrd.New(ctx, ctrd.Config{Address: n.daemon.Address, StateDir: filepath.Join(dir, "kubelet", "runtime"),
		ImageFsPath: n.daemon.Root, Logger: n.log,
		CNI: cni.Config{NodeName: name, DataDir: filepath.Join(dir, "kubelet", "cni")}})
	if err != nil {
		_ = n.daemon.Stop()
		return nil, err
	}
	if err := n.preload(ctx, o.ImagesDir); err != nil {
		n.stop()
		return nil, err
	}
	return n, nil
}

// preload imports every image tarball (*.tar) in dir into the node's containerd before the
// kubelet starts, so that pods of those images start with no registry and no `skiff image
// load`. A missing dir is no error (the banner says so): the node runs, without them.
func (n *localNode) preload(ctx context.Context, dir string) error {
	if dir == "" {
		n.imagesNote = "no image directory (--images)"
		return nil
	}
	tars, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return fmt.Errorf("--images %s: %w", dir, err)
	}
	if len(tars) == 0 {
		n.imagesNote = "none in " + dir + " (make images builds them)"
		return nil
	}
	for _, tar := range tars {
		f, err := os.Open(tar)
		if err != nil {
			return fmt.Errorf("preload images: %w", err)
		}
		imgs, err := n.rt.ImportImages(ctx, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("preload images from %s: %w", tar, err)
		}
		for _, img := range imgs {
			n.images = append(n.images, strings.TrimPrefix(img.Name, "docker.io/library/"))
		}
	}
	n.log.Info("images preloaded", "dir", dir, "images", n.images)
	return nil
}

// addressIn names an interface with an address inside n ("" if none).
func addressIn(n *net.IPNet) string {
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (n.Contains(ipn.IP) || ipn.Contains(n.IP)) {
				return ifc.Name
			}
		}
	}
	return ""
}

// kubelet makes the node's kubelet on the shared Env, with its own event recorder (events
// come from "kubelet" on the node, as in Kubernetes), which rec must run.
//
// clusterDNS is the pods' nameserver when --cluster-dns is not given (kube-dns's cluster IP
// when this process runs the DNS and the proxy; "" leaves pods with the host's resolver).
func (n *localNode) kubelet(o Options, env *component.Env, clusterDNS string) (k *kubelet.Kubelet, rec *record.Recorder, err error) {
	var dns []string
	if o.ClusterDNS != "" {
		dns = strings.Split(o.ClusterDNS, ",")
	} else if clusterDNS != "" {
		dns = []string{clusterDNS}
	}
	dir, _ := filepath.Abs(o.DataDir)
	rec = record.New(env.Client, "kubelet", n.name, n.log)
	k, err = kubelet.New(kubelet.Config{NodeName: n.name, NodeIP: "127.0.0.1", PodCIDR: n.podCIDR, Runtime: n.rt,
		RootDir: filepath.Join(dir, "kubelet"), ServerAddr: "127.0.0.1:0", ClusterDNS: dns, ClusterDomain: o.ClusterDomain,
		Client: env.Client, Informers: env.Informers, Recorder: rec, Logger: n.log, Metrics: env.Metrics})
	return k, rec, err
}

// stop ends the node as a machine's shutdown does, leaving no process behind: its containers
// get SIGTERM (SIGKILL after a few seconds) and are removed with their pod networks and the
// node's bridge; the
// next `skiff up` on the same data dir starts its pods again from their specs.
func (n *localNode) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cs, err := n.rt.ListContainers(ctx); err == nil {
		done := make(chan struct{}, len(cs))
		for _, c := range cs {
			go func() {
				defer func() { done <- struct{}{} }()
				if err := n.rt.StopContainer(ctx, c.ID, 5*time.Second); err != nil {
					n.log.Warn("stop container", "id", c.ID, "error", err)
				}
				if err := n.rt.RemoveContainer(ctx, c.ID); err != nil {
					n.log.Warn("remove container", "id", c.ID, "error", err)
				}
			}()
		}
		for range cs {
			<-done
		}
	}
	_ = n.rt.UpdatePodCIDR(ctx, n.podCIDR)
	if sbs, err := n.rt.ListSandboxes(ctx); err == nil {
		for _, sb := range sbs {
			if err := n.rt.RemoveSandbox(ctx, sb.ID); err != nil {
				n.log.Warn("remove sandbox", "id", sb.ID, "error", err)
			}
		}
	}
	_ = n.rt.Close()
	if err := n.daemon.Stop(); err != nil {
		n.log.Warn("stop containerd", "error", err)
	}
	// No pod is left on the bridge; the next start makes it again for its pod CIDR.
	if err := cni.RemoveBridge(cni.BridgeNameFor(n.name)); err != nil {
		n.log.Warn("remove the pod bridge", "error", err)
	}
}
