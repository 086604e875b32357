// Package containerd is the kubelet's real runtime: containerd through its Go client, in its
// own containerd namespace ("skiff"), with one network namespace per pod wired by CNI.
//
// A pod sandbox is a network namespace (created under StateDir/netns), the pod's hosts,
// hostname and resolv.conf files (StateDir/sandboxes/ID) and a containerd container record
// without a task that carries the sandbox's labels (pod, IP, namespace path): the record is
// how a restarted kubelet finds the sandbox again. Containers join the sandbox's network
// namespace and bind its files; their output goes to the log file the kubelet names, written
// by containerd's shim, so it survives kubelet restarts.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/pkg/netns"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/skiff-project/skiff/node/kubelet/cni"
	kimages "github.com/skiff-project/skiff/node/kubelet/images"
	"github.com/skiff-project/skiff/node/kubelet/runtime"
	"github.com/skiff-project/skiff/node/kubelet/runtime/logfile"
)

// DefaultNamespace is the containerd namespace the kubelet's objects live in.
const DefaultNamespace = "skiff"

// Labels of this runtime's own bookkeeping (beside the runtime package's pod labels).
const (
	labelType       = "io.skiff.type" // "sandbox" or "container"
	labelNetNS      = "io.skiff.sandbox.netns"
	labelIP         = "io.skiff.sandbox.ip"
	labelState      = "io.skiff.sandbox.state"
	labelLogPath    = "io.skiff.container.log"
	labelImageID    = "io.skiff.container.image-id"
	labelStartedAt  = "io.skiff.container.started-at"
	labelOOMKilled  = "io.skiff.container.oom-killed"
	labelCgroupPath = "io.skiff.container.cgroup"
	typeSandbox     = "sandbox"
	typeContainer   = "container"
)

// Config configures the runtime.
type Config struct {
	// Address is containerd's socket.
	Address string
	// Namespace is the containerd namespace (default DefaultNamespace).
	Namespace string
	// StateDir holds sandboxes' files, network namespaces and runc's state.
	StateDir string
	// ImageFsPath is a path on the disk images live on (containerd's root), for the image
	// garbage collector's usage figures; default StateDir.
	ImageFsPath string
	// Network wires pod network namespaces; nil allows host-network pods only until
	// UpdatePodCIDR makes one from CNI.
	Network *cni.Network
	// CNI configures the network UpdatePodCIDR makes (its PodCIDR is filled in).
	CNI cni.Config
	// Snapshotter unpacks images (default overlayfs).
	Snapshotter string
	// CgroupParent is the cgroup under which containers go (default "/skiff").
	CgroupParent string
	// InsecureRegistries are pulled from over plain HTTP (besides localhost).
	InsecureRegistries []string
	Logger             *slog.Logger
}

// Runtime implements runtime.Runtime on containerd.
type Runtime struct {
	cfg    Config
	client *containerd.Client
	log    *slog.Logger
	events chan runtime.Event

	mu sync.Mutex // guards cfg.Network

	stop context.CancelFunc
	wg   sync.WaitGroup
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to containerd and follows its task events.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = "overlayfs"
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "/skiff"
	}
	if cfg.ImageFsPath == "" {
		cfg.ImageFsPath = cfg.StateDir
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	for _, d := range []string{"sandboxes", "netns", "runc"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o711); err != nil {
			return nil, fmt.Errorf("runtime state dir: %w", err)
		}
	}
	c, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(cfg.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", cfg.Address, err)
	}
	r := &Runtime{cfg: cfg, client: c, log: log.With("runtime", "containerd"), events: make(chan runtime.Event, 1024)}
	var evCtx context.Context
	evCtx, r.stop = context.WithCancel(context.Background())
	r.wg.Add(1)
	go func() { defer r.wg.Done(); r.followEvents(evCtx) }()
	return r, nil
}

// Close stops following events and closes the client; containers keep running.
func (r *Runtime) Close() error {
	r.stop()
	r.wg.Wait()
	return r.client.Close()
}

func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.cfg.Namespace)
}

// Version is containerd's version.
func (r *Runtime) Version(ctx context.Context) (string, string, error) {
	v, err := r.client.Version(r.ctx(ctx))
	if err != nil {
		return "", "", fmt.Errorf("containerd version: %w", err)
	}
	return "containerd", v.Version, nil
}

// UpdatePodCIDR makes the pod network for cidr (unless Config.Network was given).
func (r *Runtime) UpdatePodCIDR(_ context.Context, cidr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.Network != nil {
		return nil
	}
	c := r.cfg.CNI
	c.PodCIDR = cidr
	if c.DataDir == "" {
		c.DataDir = filepath.Join(r.cfg.StateDir, "cni")
	}
	n, err := cni.New(c)
	if err != nil {
		return err
	}
	r.cfg.Network = n
	return nil
}

func (r *Runtime) network() *cni.Network {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg.Network
}

// ---- events ----

// followEvents turns containerd's task exit and OOM events into runtime events, resubscribing
// after errors (containerd restarts) until Close.
func (r *Runtime) followEvents(ctx context.Context) {
	for ctx.Err() == nil {
		evs, errs := r.client.Subscribe(ctx, fmt.Sprintf(`namespace==%q,topic=="/tasks/exit"`, r.cfg.Namespace),
			fmt.Sprintf(`namespace==%q,topic=="/tasks/oom"`, r.cfg.Namespace))
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					r.log.Warn("containerd events interrupted, resubscribing", "error", err)
				}
				break loop
			case env := <-evs:
				if env == nil || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				switch e := v.(type) {
				case *apievents.TaskExit:
					if e.ID != e.ContainerID { // an exec'd process, not the container
						continue
					}
					r.emit(ctx, runtime.EventContainerExited, e.ContainerID)
				case *apievents.TaskOOM:
					r.markOOM(ctx, e.ContainerID)
					r.emit(ctx, runtime.EventContainerOOM, e.ContainerID)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (r *Runtime) emit(ctx context.Context, t runtime.EventType, id string) {
	ev := runtime.Event{Type: t, ContainerID: id}
	if c, err := r.client.LoadContainer(r.ctx(ctx), id); err == nil {
		if labels, err := c.Labels(r.ctx(ctx)); err == nil {
			ev.Pod = podRef(labels)
		}
	}
	select {
	case r.events <- ev:
	default: // the kubelet's periodic resync catches up
	}
}

// markOOM records on the container that the kernel killed it for memory, so the reason
// survives kubelet restarts.
func (r *Runtime) markOOM(ctx context.Context, id string) {
	c, err := r.client.LoadContainer(r.ctx(ctx), id)
	if err != nil {
		return
	}
	if _, err := c.SetLabels(r.ctx(ctx), map[string]string{labelOOMKilled: "true"}); err != nil {
		r.log.Warn("record OOM kill", "container", id, "error", err)
	}
}

// Events delivers container exits and OOM kills.
func (r *Runtime) Events() <-chan runtime.Event { return r.events }

// ---- images ----

func (r *Runtime) toImage(ctx context.Context, img containerd.Image) (*runtime.Image, error) {
	out := &runtime.Image{Name: img.Name(), Digest: img.Target().Digest.String()}
	if cfg, err := img.Config(ctx); err == nil {
		out.ID = cfg.Digest.String()
	}
	if size, err := img.Size(ctx); err == nil {
		out.Size = size
	}
	return out, nil
}

// GetImage returns the image named ref (normalised), or ErrNotFound.
func (r *Runtime) GetImage(ctx context.Context, ref string) (*runtime.Image, error) {
	ctx = r.ctx(ctx)
	name, err := kimages.Normalize(ref)
	if err != nil {
		return nil, err
	}
	img, err := r.client.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %s: %w", name, runtime.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	// An image imported but not unpacked (or whose snapshot was removed) is unpacked now.
	if ok, err := img.IsUnpacked(ctx, r.cfg.Snapshotter); err == nil && !ok {
		if err := img.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", name, err)
		}
	}
	return r.toImage(ctx, img)
}

func (r *Runtime) resolver() containerd.RemoteOpt {
	insecure := map[string]bool{}
	for _, h := range r.cfg.InsecureRegistries {
		insecure[h] = true
	}
	plain := func(host string) (bool, error) {
		if insecure[host] {
			return true, nil
		}
		return docker.MatchLocalhost(host)
	}
	return containerd.WithResolver(docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(plain)),
	}))
}

// PullImage pulls and unpacks ref, reporting each blob as it is fetched.
func (r *Runtime) PullImage(ctx context.Context, ref string, progress runtime.PullProgress) (*runtime.Image, error) {
	ctx = r.ctx(ctx)
	name, err := kimages.Normalize(ref)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var done, total int64
	handler := images.HandlerFunc(func(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if images.IsLayerType(desc.MediaType) && progress != nil {
			mu.Lock()
			total += desc.Size
			done += desc.Size
			d, t := done, total
			mu.Unlock()
			progress(d, t)
		}
		return nil, nil
	})
	img, err := r.client.Pull(ctx, name, containerd.WithPullUnpack, containerd.WithPullSnapshotter(r.cfg.Snapshotter),
		r.resolver(), containerd.WithImageHandler(handler))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("pull %s: %w: %v", name, runtime.ErrNotFound, err)
		}
		return nil, fmt.Errorf("pull %s: %w", name, err)
	}
	return r.toImage(ctx, img)
}

// ListImages lists the images held.
func (r *Runtime) ListImages(ctx context.Context) ([]*runtime.Image, error) {
	ctx = r.ctx(ctx)
	imgs, err := r.client.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]*runtime.Image, 0, len(imgs))
	for _, img := range imgs {
		i, _ := r.toImage(ctx, img)
		out = append(out, i)
	}
	return out, nil
}

// RemoveImage deletes an image (its content and snapshots are collected by containerd).
func (r *Runtime) RemoveImage(ctx context.Context, ref string) error {
	err := r.client.ImageService().Delete(r.ctx(ctx), ref, images.SynchronousDelete())
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// ImportImages imports an image tarball (docker save, or an OCI layout with image names) and
// unpacks what it held.
func (r *Runtime) ImportImages(ctx context.Context, rd io.Reader) ([]*runtime.Image, error) {
	ctx = r.ctx(ctx)
	imgs, err := r.client.Import(ctx, rd, containerd.WithImportPlatform(defaultPlatform()), containerd.WithSkipMissing())
	if err != nil {
		return nil, fmt.Errorf("import images: %w", err)
	}
	var out []*runtime.Image
	for _, meta := range imgs {
		img := containerd.NewImage(r.client, meta)
		if err := img.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", meta.Name, err)
		}
		i, _ := r.toImage(ctx, img)
		out = append(out, i)
	}
	if len(out) == 0 {
		return nil, errors.New("the tarball holds no named image (it needs index.json names or a docker manifest.json with RepoTags)")
	}
	return out, nil
}

// ImageFsUsage is the usage of the file system under ImageFsPath.
func (r *Runtime) ImageFsUsage(context.Context) (uint64, uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.cfg.ImageFsPath, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", r.cfg.ImageFsPath, err)
	}
	capacity := st.Blocks * uint64(st.Bsize)
	return capacity - st.Bfree*uint64(st.Bsize), capacity, nil
}

// ---- sandboxes ----

func podLabels(p runtime.PodRef) map[string]string {
	return map[string]string{runtime.LabelPodUID: p.UID, runtime.LabelPodName: p.Name, runtime.LabelPodNamespace: p.Namespace}
}

func podRef(labels map[string]string) runtime.PodRef {
	return runtime.PodRef{UID: labels[runtime.LabelPodUID], Name: labels[runtime.LabelPodName], Namespace: labels[runtime.LabelPodNamespace]}
}

func (r *Runtime) sandboxDir(id string) string { return filepath.Join(r.cfg.StateDir, "sandboxes", id) }

// RunSandbox makes the pod's network namespace, wires it with CNI, writes its hosts,
// hostname and resolv.conf, and records the sandbox in containerd.
func (r *Runtime) RunSandbox(ctx context.Context, cfg runtime.SandboxConfig) (*runtime.Sandbox, error) {
	ctx = r.ctx(ctx)
	id := newID()
	sb := &runtime.Sandbox{ID: id, Pod: cfg.Pod, State: runtime.SandboxReady, CreatedAt: time.Now()}
	labels := podLabels(cfg.Pod)
	labels[labelType] = typeSandbox
	labels[labelState] = string(runtime.SandboxReady)
	cleanup := func() {
		if sb.NetNSPath != "" && r.network() != nil {
			_ = r.network().Teardown(context.WithoutCancel(ctx), id, sb.NetNSPath, cniLabels(cfg.Pod, id))
			_ = netns.LoadNetNS(sb.NetNSPath).Remove()
		}
		_ = os.RemoveAll(r.sandboxDir(id))
	}
	if !cfg.HostNetwork {
		if r.network() == nil {
			return nil, errors.New("this node has no pod network (CNI) configured; only hostNetwork pods can run")
		}
		ns, err := netns.NewNetNS(filepath.Join(r.cfg.StateDir, "netns"))
		if err != nil {
			return nil, fmt.Errorf("create network namespace: %w", err)
		}
		sb.NetNSPath = ns.GetPath()
		ip, err := r.network().Setup(ctx, id, sb.NetNSPath, cniLabels(cfg.Pod, id))
		if err != nil {
			cleanup()
			return nil, err
		}
		sb.IP = ip
		labels[labelNetNS], labels[labelIP] = sb.NetNSPath, ip
	} else {
		sb.IP = hostIP()
		labels[labelIP] = sb.IP
	}
	if err := r.writeSandboxFiles(id, cfg, sb.IP); err != nil {
		cleanup()
		return nil, err
	}
	_, err := r.client.NewContainer(ctx, id, containerd.WithContainerLabels(labels),
		containerd.WithSpec(&oci.Spec{Version: specs.Version}), containerd.WithRuntime(plugin(), nil))
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("record sandbox: %w", err)
	}
	return sb, nil
}

func plugin() string { return "io.containerd.runc.v2" }

func cniLabels(p runtime.PodRef, id string) map[string]string {
	return map[string]string{"K8S_POD_NAMESPACE": p.Namespace, "K8S_POD_NAME": p.Name,
		"K8S_POD_INFRA_CONTAINER_ID": id, "K8S_POD_UID": p.UID, "IgnoreUnknown": "1"}
}

// writeSandboxFiles writes the files every container of the pod binds.
func (r *Runtime) writeSandboxFiles(id string, cfg runtime.SandboxConfig, ip string) error {
	dir := r.sandboxDir(id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	hosts := "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
	if ip != "" && !cfg.HostNetwork {
		names := append([]string{}, cfg.HostAliases...)
		names = append(names, cfg.Hostname)
		hosts += ip + "\t" + strings.Join(names, "\t") + "\n"
	}
	var resolv strings.Builder
	if len(cfg.DNS.Searches) > 0 {
		resolv.WriteString("search " + strings.Join(cfg.DNS.Searches, " ") + "\n")
	}
	for _, s := range cfg.DNS.Servers {
		resolv.WriteString("nameserver " + s + "\n")
	}
	if len(cfg.DNS.Options) > 0 {
		resolv.WriteString("options " + strings.Join(cfg.DNS.Options, " ") + "\n")
	}
	for name, content := range map[string]string{"hosts": hosts, "hostname": cfg.Hostname + "\n", "resolv.conf": resolv.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("sandbox %s: %w", name, err)
		}
	}
	return nil
}

// StopSandbox tears the sandbox's network down; its record stays until RemoveSandbox.
func (r *Runtime) StopSandbox(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	if path := labels[labelNetNS]; path != "" {
		if r.network() != nil {
			if err := r.network().Teardown(ctx, id, path, cniLabels(podRef(labels), id)); err != nil {
				return err
			}
		}
		if err := netns.LoadNetNS(path).Remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove network namespace %s: %w", path, err)
		}
	}
	if labels[labelState] != string(runtime.SandboxNotReady) {
		if _, err := c.SetLabels(ctx, map[string]string{labelState: string(runtime.SandboxNotReady)}); err != nil {
			return fmt.Errorf("sandbox %s: %w", id, err)
		}
	}
	return nil
}

// RemoveSandbox stops the sandbox if needed and deletes its record and files.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	if err := r.StopSandbox(ctx, id); err != nil {
		return err
	}
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err == nil {
		err = c.Delete(ctx)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	return os.RemoveAll(r.sandboxDir(id))
}

// ListSandboxes lists the sandboxes recorded in containerd.
func (r *Runtime) ListSandboxes(ctx context.Context) ([]*runtime.Sandbox, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.ContainerService().List(ctx, fmt.Sprintf(`labels.%q==%q`, labelType, typeSandbox))
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	out := make([]*runtime.Sandbox, 0, len(cs))
	for _, c := range cs {
		sb := &runtime.Sandbox{ID: c.ID, Pod: podRef(c.Labels), IP: c.Labels[labelIP], NetNSPath: c.Labels[labelNetNS],
			State: runtime.SandboxState(c.Labels[labelState]), CreatedAt: c.CreatedAt}
		// A namespace lost to a reboot makes the sandbox unusable: the kubelet makes a new one.
		if sb.NetNSPath != "" && sb.State == runtime.SandboxReady {
			if closed, err := netns.LoadNetNS(sb.NetNSPath).Closed(); err != nil || closed {
				sb.State = runtime.SandboxNotReady
			}
		}
		out = append(out, sb)
	}
	return out, nil
}

// ---- containers ----

// CreateContainer creates (not starts) a container in the sandbox.
func (r *Runtime) CreateContainer(ctx context.Context, sb *runtime.Sandbox, cfg runtime.ContainerConfig) (string, error) {
	ctx = r.ctx(ctx)
	img, err := r.client.GetImage(ctx, cfg.Image)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", cfg.Image, err)
	}
	id := newID()
	imgID := ""
	if c, err := img.Config(ctx); err == nil {
		imgID = c.Digest.String()
	}
	cgroup := r.cfg.CgroupParent + "/" + id
	labels := podLabels(sb.Pod)
	labels[labelType] = typeContainer
	labels[runtime.LabelContainerName] = cfg.Name
	labels[runtime.LabelAttempt] = strconv.Itoa(cfg.Attempt)
	labels[runtime.LabelSandboxID] = sb.ID
	labels[labelLogPath] = cfg.LogPath
	labels[labelImageID] = imgID
	labels[labelCgroupPath] = cgroup

	dir := r.sandboxDir(sb.ID)
	mounts := []specs.Mount{
		bind(filepath.Join(dir, "hosts"), "/etc/hosts", false),
		bind(filepath.Join(dir, "hostname"), "/etc/hostname", false),
		bind(filepath.Join(dir, "resolv.conf"), "/etc/resolv.conf", false),
	}
	for _, m := range cfg.Mounts {
		mounts = append(mounts, bind(m.HostPath, m.ContainerPath, m.ReadOnly))
	}
	opts := []oci.SpecOpts{oci.WithImageConfig(img)}
	switch {
	case len(cfg.Command) > 0:
		opts = append(opts, oci.WithProcessArgs(append(append([]string{}, cfg.Command...), cfg.Args...)...))
	case len(cfg.Args) > 0:
		opts = append(opts, oci.WithImageConfigArgs(img, cfg.Args))
	}
	opts = append(opts, oci.WithEnv(cfg.Env), oci.WithMounts(mounts), oci.WithCgroup(cgroup),
		oci.WithHostname(hostnameOf(dir)))
	if cfg.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(cfg.WorkingDir))
	}
	if cfg.TTY {
		opts = append(opts, oci.WithTTY)
	}
	if sb.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sb.NetNSPath}))
	} else {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	}
	if cfg.MemoryLimitBytes > 0 {
		// Swap as large as the limit disables swapping past it (as Kubernetes does), so
		// the limit ends in an OOM kill.
		opts = append(opts, oci.WithMemoryLimit(uint64(cfg.MemoryLimitBytes)), withMemorySwapIfSupported(cfg.MemoryLimitBytes))
	}
	if cfg.CPULimitMilli > 0 {
		const period = 100000
		opts = append(opts, oci.WithCPUCFS(cfg.CPULimitMilli*period/1000, period))
	}
	if cfg.CPURequestMilli > 0 {
		opts = append(opts, oci.WithCPUShares(uint64(max(2, cfg.CPURequestMilli*1024/1000))))
	}
	_, err = r.client.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithSnapshotter(r.cfg.Snapshotter),
		containerd.WithNewSnapshot(id, img),
		containerd.WithContainerLabels(labels),
		containerd.WithRuntime(plugin(), &runcoptions.Options{Root: filepath.Join(r.cfg.StateDir, "runc")}),
		containerd.WithNewSpec(opts...),
	)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", cfg.Name, err)
	}
	return id, nil
}

// hostnameOf reads the hostname written for the sandbox.
func hostnameOf(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "hostname"))
	return strings.TrimSpace(string(b))
}

func bind(src, dst string, ro bool) specs.Mount {
	opts := []string{"rbind", "rprivate"}
	if ro {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: opts}
}

// withMemorySwapIfSupported caps memory+swap at the limit where the kernel accounts swap
// (memory.memsw on cgroup v1); without that accounting runc would refuse the setting.
func withMemorySwapIfSupported(limit int64) oci.SpecOpts {
	return func(ctx context.Context, c oci.Client, ctr *containers.Container, s *oci.Spec) error {
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err != nil {
			return nil
		}
		return oci.WithMemorySwap(limit)(ctx, c, ctr, s)
	}
}

// StartContainer starts the container's task with its output going to its log file.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return err
	}
	var creator cio.Creator = cio.NullIO
	if p := labels[labelLogPath]; p != "" {
		creator = cio.LogFile(p)
	}
	task, err := c.NewTask(ctx, creator)
	if err != nil {
		return fmt.Errorf("create task of %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: time.Now().UTC().Format(time.RFC3339Nano)}); err != nil {
		return err
	}
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// StopContainer sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (r *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("task of %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err == nil && st.Status == containerd.Stopped {
		return nil
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("wait for %s: %w", id, err)
	}
	if grace > 0 {
		if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("SIGTERM %s: %w", id, err)
		}
		select {
		case <-exited:
			return nil
		case <-time.After(grace):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("SIGKILL %s: %w", id, err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RemoveContainer deletes the container's task, record and snapshot (killing it if needed).
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task of %s: %w", id, err)
		}
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	return nil
}

// ListContainers lists the kubelet's containers with their task states.
func (r *Runtime) ListContainers(ctx context.Context) ([]*runtime.Container, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.ContainerService().List(ctx, fmt.Sprintf(`labels.%q==%q`, labelType, typeContainer))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	tasks, err := r.client.TaskService().List(ctx, &tasksListRequest)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	type taskInfo struct {
		status   string
		exit     uint32
		exitedAt time.Time
	}
	byID := map[string]taskInfo{}
	for _, t := range tasks.Tasks {
		ti := taskInfo{status: t.Status.String(), exit: t.ExitStatus}
		if t.ExitedAt != nil {
			ti.exitedAt = t.ExitedAt.AsTime()
		}
		byID[t.ID] = ti
	}
	out := make([]*runtime.Container, 0, len(cs))
	for _, c := range cs {
		attempt, _ := strconv.Atoi(c.Labels[runtime.LabelAttempt])
		ctr := &runtime.Container{ID: c.ID, SandboxID: c.Labels[runtime.LabelSandboxID], Pod: podRef(c.Labels),
			Name: c.Labels[runtime.LabelContainerName], Attempt: attempt, Image: c.Image, ImageID: c.Labels[labelImageID],
			CreatedAt: c.CreatedAt, LogPath: c.Labels[labelLogPath], State: runtime.ContainerCreated}
		if ts := c.Labels[labelStartedAt]; ts != "" {
			ctr.StartedAt, _ = time.Parse(time.RFC3339Nano, ts)
		}
		if t, ok := byID[c.ID]; ok {
			switch t.status {
			case "RUNNING", "PAUSED", "PAUSING":
				ctr.State = runtime.ContainerRunning
			case "STOPPED":
				ctr.State, ctr.ExitCode, ctr.FinishedAt = runtime.ContainerExited, int32(t.exit), t.exitedAt
				if c.Labels[labelOOMKilled] == "true" || oomKilled(c.Labels[labelCgroupPath]) {
					ctr.Reason = "OOMKilled"
				}
			case "CREATED":
				ctr.State = runtime.ContainerCreated
			default:
				ctr.State = runtime.ContainerUnknown
			}
		} else if !ctr.StartedAt.IsZero() {
			// Started once but its task is gone (containerd lost it): treat as exited.
			ctr.State, ctr.ExitCode, ctr.Reason = runtime.ContainerExited, 255, "Unknown"
		}
		out = append(out, ctr)
	}
	return out, nil
}

// oomKilled reads the container's memory cgroup (kept until its task is deleted) for OOM kills.
func oomKilled(cgroup string) bool {
	if cgroup == "" {
		return false
	}
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", cgroup, "memory.oom_control")); err == nil {
		return countOf(string(b), "oom_kill") > 0
	}
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cgroup, "memory.events")); err == nil {
		return countOf(string(b), "oom_kill") > 0
	}
	return false
}

func countOf(text, key string) int64 {
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// ---- logs and exec ----

func (r *Runtime) running(ctx context.Context, id string) bool {
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return false
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		return false
	}
	st, err := t.Status(ctx)
	return err == nil && st.Status == containerd.Running
}

// Logs copies the container's log file.
func (r *Runtime) Logs(ctx context.Context, id string, opts runtime.LogOptions, w io.Writer) error {
	nctx := r.ctx(ctx)
	c, err := r.client.LoadContainer(nctx, id)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	if err != nil {
		return err
	}
	labels, err := c.Labels(nctx)
	if err != nil {
		return err
	}
	return logfile.Copy(ctx, labels[labelLogPath], logfile.Options{TailLines: opts.TailLines, LimitBytes: opts.LimitBytes,
		Follow: opts.Follow, Running: func() bool { return r.running(nctx, id) }}, w)
}

// Exec runs a process in the container's namespaces, with its environment.
func (r *Runtime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return -1, fmt.Errorf("container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		return -1, fmt.Errorf("container %s is not running: %w", id, err)
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return -1, err
	}
	pspec := *spec.Process
	pspec.Args = opts.Cmd
	pspec.Terminal = opts.TTY
	// The shim keeps the process's stdin open until told: at the end of the caller's stdin,
	// CloseIO passes the EOF on.
	var stdin io.Reader
	started := make(chan containerd.Process, 1)
	if opts.Stdin != nil {
		stdin = &eofReader{r: opts.Stdin, onEOF: func() {
			select {
			case p := <-started:
				started <- p
				_ = p.CloseIO(context.WithoutCancel(ctx), containerd.WithStdinCloser)
			case <-ctx.Done():
			}
		}}
	}
	// The shim opens every stream it is given a FIFO for; a missing one must be an empty
	// path for all of them, so output nobody wants is discarded here instead.
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if sameWriter(stdout, stderr) && stdout != io.Discard {
		// Two copies write into one writer at once: serialise them (a bytes.Buffer would
		// lose output to the race).
		w := &lockedWriter{w: stdout}
		stdout, stderr = w, w
	}
	ioOpts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr)}
	if opts.TTY {
		ioOpts = append(ioOpts, cio.WithTerminal)
	}
	execID := "exec-" + newID()[:16]
	proc, err := task.Exec(ctx, execID, &pspec, cio.NewCreator(ioOpts...))
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer func() { _, _ = proc.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill) }()
	exited, err := proc.Wait(ctx)
	if err != nil {
		return -1, err
	}
	if err := proc.Start(ctx); err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	started <- proc
	if opts.Resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-opts.Resize:
					if !ok {
						return
					}
					_ = proc.Resize(ctx, uint32(sz.Width), uint32(sz.Height))
				case <-exited:
					return
				}
			}
		}()
	}
	select {
	case st := <-exited:
		code, _, err := st.Result()
		// Let the copy of the last output finish before the caller closes its streams.
		proc.IO().Wait()
		return int(code), err
	case <-ctx.Done():
		_ = proc.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		return -1, ctx.Err()
	}
}

// sameWriter reports whether a and b are the same writer (false for writers whose type is
// not comparable, which == would panic on).
func sameWriter(a, b io.Writer) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

// lockedWriter serialises writes (and, not being an io.ReaderFrom, keeps io.Copy to Write).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// eofReader calls onEOF once when r ends.
type eofReader struct {
	r     io.Reader
	onEOF func()
	once  sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(e.onEOF)
	}
	return n, err
}

// Inventory counts what containerd holds in the runtime's namespace (tests and diagnostics).
type Inventory struct {
	Containers, Tasks, Snapshots int
}

// Inventory counts containers, tasks and snapshots in the runtime's containerd namespace.
func (r *Runtime) Inventory(ctx context.Context) (Inventory, error) {
	ctx = r.ctx(ctx)
	var inv Inventory
	cs, err := r.client.ContainerService().List(ctx)
	if err != nil {
		return inv, err
	}
	inv.Containers = len(cs)
	tasks, err := r.client.TaskService().List(ctx, &tasksListRequest)
	if err != nil {
		return inv, err
	}
	inv.Tasks = len(tasks.Tasks)
	err = r.client.SnapshotService(r.cfg.Snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		// Image layers are snapshots too; a container's own snapshot is the active one
		// named after it.
		if info.Kind == snapshots.KindActive {
			inv.Snapshots++
		}
		return nil
	})
	return inv, err
}
