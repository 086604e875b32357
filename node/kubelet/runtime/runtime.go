// Package runtime is the kubelet's pluggable container runtime layer, shaped like Kubernetes'
// CRI: pod sandboxes (a network namespace per pod, with its hosts and DNS files), containers
// inside them, images, logs and exec. The kubelet works through Runtime only; package
// runtime/containerd is the real implementation and runtime/hollow one that only pretends,
// for scale tests with hundreds of simulated nodes in one process.
//
// Everything a runtime runs carries labels naming its pod and container, so that a restarted
// kubelet finds (adopts) what it already runs instead of starting it again.
package runtime

import (
	"context"
	"errors"
	"io"
	"time"
)

// Labels every runtime sets on sandboxes and containers, read back by ListSandboxes and
// ListContainers.
const (
	LabelPodUID        = "io.skiff.pod.uid"
	LabelPodName       = "io.skiff.pod.name"
	LabelPodNamespace  = "io.skiff.pod.namespace"
	LabelContainerName = "io.skiff.container.name"
	LabelAttempt       = "io.skiff.container.attempt"
	LabelSandboxID     = "io.skiff.sandbox.id"
)

// ErrNotFound is returned (wrapped) for a sandbox, container or image the runtime does not have.
var ErrNotFound = errors.New("not found")

// PodRef names a pod: what sandboxes and containers are labelled with.
type PodRef struct {
	UID, Namespace, Name string
}

// DNSConfig is what goes into a pod's /etc/resolv.conf.
type DNSConfig struct {
	Servers  []string
	Searches []string
	Options  []string
}

// SandboxConfig describes a pod's sandbox.
type SandboxConfig struct {
	Pod      PodRef
	Hostname string // the pod's hostname (its name, or spec.hostname)
	// HostAliases are extra /etc/hosts lines' names for the pod's own IP (its FQDN when it
	// has a subdomain).
	HostAliases []string
	DNS         DNSConfig
	// HostNetwork runs the pod in the host's network namespace (no CNI).
	HostNetwork bool
}

// SandboxState is Ready while the sandbox's network is set up.
type SandboxState string

const (
	SandboxReady    SandboxState = "Ready"
	SandboxNotReady SandboxState = "NotReady"
)

// Sandbox is a pod's sandbox as the runtime has it.
type Sandbox struct {
	ID        string
	Pod       PodRef
	IP        string
	NetNSPath string // empty for host network
	State     SandboxState
	CreatedAt time.Time
}

// Mount binds a host path into a container.
type Mount struct {
	HostPath, ContainerPath string
	ReadOnly                bool
}

// ContainerConfig describes one container of a pod (already resolved by the kubelet: the
// final argv, the environment, the mounts).
type ContainerConfig struct {
	Name    string
	Attempt int
	Image   string // a normalised reference the runtime has (see EnsureImage)
	// Command replaces the image's entrypoint and Args its cmd, with Kubernetes' rules:
	// Command set: Command+Args; only Args: entrypoint+Args; neither: the image's.
	Command, Args []string
	Env           []string // KEY=VALUE, after the image's own
	WorkingDir    string
	Mounts        []Mount
	// MemoryLimitBytes (0: none), CPU limit in millicores (0: none) and CPU request (shares).
	MemoryLimitBytes int64
	CPULimitMilli    int64
	CPURequestMilli  int64
	// LogPath is where stdout and stderr go; the directory exists.
	LogPath string
	Stdin   bool
	TTY     bool
}

// ContainerState is a container's lifecycle state.
type ContainerState string

const (
	ContainerCreated ContainerState = "Created"
	ContainerRunning ContainerState = "Running"
	ContainerExited  ContainerState = "Exited"
	ContainerUnknown ContainerState = "Unknown"
)

// Container is a container as the runtime has it.
type Container struct {
	ID        string
	SandboxID string
	Pod       PodRef
	Name      string
	Attempt   int
	Image     string // the reference it was created from
	ImageID   string // the image's digest
	State     ContainerState
	CreatedAt time.Time
	StartedAt time.Time
	// FinishedAt, ExitCode and Reason are set once it has exited; Reason is OOMKilled when
	// the kernel killed it for its memory limit.
	FinishedAt time.Time
	ExitCode   int32
	Reason     string
	LogPath    string
}

// Image is an image the runtime holds.
type Image struct {
	Name string // normalised reference, docker.io/library/busybox:latest
	ID   string // config digest (sha256:...)
	// Digest is the manifest digest (what a pull by digest names).
	Digest string
	Size   int64
}

// LogOptions select what Logs writes.
type LogOptions struct {
	Follow     bool
	TailLines  int64 // < 0: all
	LimitBytes int64 // 0: no limit
}

// ExecOptions are a command run in a running container.
type ExecOptions struct {
	Cmd            []string
	Stdin          io.Reader // nil: no stdin
	Stdout, Stderr io.Writer // Stderr ignored with TTY
	TTY            bool
	Resize         <-chan TerminalSize
}

// TerminalSize is a TTY's size.
type TerminalSize struct{ Width, Height uint16 }

// EventType says what happened to a container.
type EventType string

const (
	EventContainerExited EventType = "ContainerExited"
	EventContainerOOM    EventType = "ContainerOOM"
)

// Event tells the kubelet that a container changed, so it syncs the pod at once instead of
// at the next periodic resync.
type Event struct {
	Type        EventType
	ContainerID string
	Pod         PodRef
}

// PullProgress reports a pull's progress (bytes done of total, per layer summed).
type PullProgress func(done, total int64)

// Runtime runs pods. Every method is safe for concurrent use.
type Runtime interface {
	// Name and Version identify the runtime ("containerd", "1.6.20").
	Version(ctx context.Context) (name, version string, err error)
	// UpdatePodCIDR configures the pod network for the node's pod CIDR (CRI's
	// UpdateRuntimeConfig); sandboxes can be made only after it.
	UpdatePodCIDR(ctx context.Context, cidr string) error

	// GetImage returns the image ref names (normalised), or ErrNotFound.
	GetImage(ctx context.Context, ref string) (*Image, error)
	// PullImage pulls ref from its registry and unpacks it.
	PullImage(ctx context.Context, ref string, progress PullProgress) (*Image, error)
	ListImages(ctx context.Context) ([]*Image, error)
	RemoveImage(ctx context.Context, ref string) error
	// ImportImages reads an image tarball (OCI layout or docker save) and returns what it held.
	ImportImages(ctx context.Context, r io.Reader) ([]*Image, error)
	// ImageFsUsage is the disk the images live on: bytes used and capacity.
	ImageFsUsage(ctx context.Context) (used, capacity uint64, err error)

	RunSandbox(ctx context.Context, cfg SandboxConfig) (*Sandbox, error)
	// StopSandbox tears the sandbox's network down (idempotent); RemoveSandbox forgets it.
	StopSandbox(ctx context.Context, id string) error
	RemoveSandbox(ctx context.Context, id string) error
	ListSandboxes(ctx context.Context) ([]*Sandbox, error)

	CreateContainer(ctx context.Context, sandbox *Sandbox, cfg ContainerConfig) (id string, err error)
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends SIGTERM, waits up to grace, then SIGKILL; it returns once the
	// container has exited.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	ListContainers(ctx context.Context) ([]*Container, error)

	// Logs writes a container's output to w (until ctx ends or, following, the container
	// exits).
	Logs(ctx context.Context, id string, opts LogOptions, w io.Writer) error
	// Exec runs a command in a running container and returns its exit code.
	Exec(ctx context.Context, id string, opts ExecOptions) (exitCode int, err error)

	// Events delivers container changes; a slow reader may miss some (the kubelet resyncs).
	Events() <-chan Event
	Close() error
}
