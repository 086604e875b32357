// Package hollow is a runtime that only pretends: sandboxes get addresses from the node's pod
// CIDR and containers "run" at once, all in memory. A kubelet on it does everything else for
// real (registration, heartbeats, the bus, status), so hundreds of hollow nodes in one process
// exercise the control plane at scale (Kubernetes' kubemark does the same). See package
// node/kubelet/hollow for starting a fleet of them.
package hollow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/skiff-project/skiff/node/kubelet/images"
	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

// Runtime is the hollow runtime.
type Runtime struct {
	mu         sync.Mutex
	cidr       *net.IPNet
	used       map[string]bool
	sandboxes  map[string]*runtime.Sandbox
	containers map[string]*runtime.Container
	images     map[string]*runtime.Image
	events     chan runtime.Event
	// FsUsed and FsCapacity are what ImageFsUsage reports (for image GC tests).
	FsUsed, FsCapacity uint64
	// PullError, when set, makes every pull of an image not yet held fail with it.
	PullError error
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns an empty hollow runtime.
func New() *Runtime {
	return &Runtime{used: map[string]bool{}, sandboxes: map[string]*runtime.Sandbox{}, containers: map[string]*runtime.Container{},
		images: map[string]*runtime.Image{}, events: make(chan runtime.Event, 256), FsCapacity: 100 << 30}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *Runtime) Version(context.Context) (string, string, error) { return "hollow", "v0.1.0", nil }

func (r *Runtime) UpdatePodCIDR(_ context.Context, cidr string) error {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	r.mu.Lock()
	r.cidr = n
	r.mu.Unlock()
	return nil
}

// AddImage makes the runtime hold an image (as a load would).
func (r *Runtime) AddImage(ref string, size int64) {
	name, _ := images.Normalize(ref)
	r.mu.Lock()
	r.images[name] = &runtime.Image{Name: name, ID: "sha256:" + newID() + newID(), Size: size}
	r.mu.Unlock()
}

func (r *Runtime) GetImage(_ context.Context, ref string) (*runtime.Image, error) {
	name, err := images.Normalize(ref)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if img, ok := r.images[name]; ok {
		c := *img
		return &c, nil
	}
	return nil, fmt.Errorf("image %s: %w", name, runtime.ErrNotFound)
}

// PullImage "pulls" any image instantly (unless PullError is set).
func (r *Runtime) PullImage(ctx context.Context, ref string, progress runtime.PullProgress) (*runtime.Image, error) {
	r.mu.Lock()
	pullErr := r.PullError
	r.mu.Unlock()
	if pullErr != nil {
		return nil, pullErr
	}
	r.AddImage(ref, 1<<20)
	if progress != nil {
		progress(1<<20, 1<<20)
	}
	return r.GetImage(ctx, ref)
}

func (r *Runtime) ListImages(context.Context) ([]*runtime.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*runtime.Image, 0, len(r.images))
	for _, img := range r.images {
		c := *img
		out = append(out, &c)
	}
	return out, nil
}

func (r *Runtime) RemoveImage(_ context.Context, ref string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if img, ok := r.images[ref]; ok {
		r.FsUsed -= min(r.FsUsed, uint64(img.Size))
	}
	delete(r.images, ref)
	return nil
}

func (r *Runtime) ImportImages(_ context.Context, rd io.Reader) ([]*runtime.Image, error) {
	_, _ = io.Copy(io.Discard, rd)
	return nil, fmt.Errorf("the hollow runtime does not read image tarballs")
}

func (r *Runtime) ImageFsUsage(context.Context) (uint64, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.FsUsed, r.FsCapacity, nil
}

// allocate hands out the next free address of the pod CIDR (its first is the gateway).
func (r *Runtime) allocate() (string, error) {
	if r.cidr == nil {
		return "", fmt.Errorf("no pod CIDR yet")
	}
	ip := r.cidr.IP.To4()
	base := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
	ones, bits := r.cidr.Mask.Size()
	size := uint32(1) << (bits - ones)
	for i := uint32(2); i < size-1; i++ {
		v := base + i
		s := net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
		if !r.used[s] {
			r.used[s] = true
			return s, nil
		}
	}
	return "", fmt.Errorf("pod CIDR %s is exhausted", r.cidr)
}

func (r *Runtime) RunSandbox(_ context.Context, cfg runtime.SandboxConfig) (*runtime.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ip, err := r.allocate()
	if err != nil {
		return nil, err
	}
	sb := &runtime.Sandbox{ID: newID(), Pod: cfg.Pod, IP: ip, State: runtime.SandboxReady, CreatedAt: time.Now()}
	r.sandboxes[sb.ID] = sb
	c := *sb
	return &c, nil
}

func (r *Runtime) StopSandbox(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sb, ok := r.sandboxes[id]; ok && sb.State == runtime.SandboxReady {
		sb.State = runtime.SandboxNotReady
		delete(r.used, sb.IP)
	}
	return nil
}

func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	_ = r.StopSandbox(ctx, id)
	r.mu.Lock()
	delete(r.sandboxes, id)
	r.mu.Unlock()
	return nil
}

func (r *Runtime) ListSandboxes(context.Context) ([]*runtime.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*runtime.Sandbox, 0, len(r.sandboxes))
	for _, sb := range r.sandboxes {
		c := *sb
		out = append(out, &c)
	}
	return out, nil
}

func (r *Runtime) CreateContainer(_ context.Context, sb *runtime.Sandbox, cfg runtime.ContainerConfig) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	img, ok := r.images[cfg.Image]
	if !ok {
		return "", fmt.Errorf("image %s: %w", cfg.Image, runtime.ErrNotFound)
	}
	c := &runtime.Container{ID: newID(), SandboxID: sb.ID, Pod: sb.Pod, Name: cfg.Name, Attempt: cfg.Attempt,
		Image: cfg.Image, ImageID: img.ID, State: runtime.ContainerCreated, CreatedAt: time.Now()}
	r.containers[c.ID] = c
	return c.ID, nil
}

func (r *Runtime) StartContainer(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	c.State, c.StartedAt = runtime.ContainerRunning, time.Now()
	return nil
}

// StopContainer "stops" at once: exit 0 after SIGTERM (grace > 0), 137 for SIGKILL.
func (r *Runtime) StopContainer(_ context.Context, id string, grace time.Duration) error {
	r.mu.Lock()
	c, ok := r.containers[id]
	if !ok || c.State != runtime.ContainerRunning {
		r.mu.Unlock()
		return nil
	}
	c.State, c.FinishedAt, c.ExitCode = runtime.ContainerExited, time.Now(), 0
	if grace <= 0 {
		c.ExitCode = 137
	}
	ev := runtime.Event{Type: runtime.EventContainerExited, ContainerID: id, Pod: c.Pod}
	r.mu.Unlock()
	select {
	case r.events <- ev:
	default:
	}
	return nil
}

// Exit makes a running container exit with code (tests: crash loops on hollow nodes).
func (r *Runtime) Exit(id string, code int32) {
	r.mu.Lock()
	c, ok := r.containers[id]
	if ok && c.State == runtime.ContainerRunning {
		c.State, c.FinishedAt, c.ExitCode = runtime.ContainerExited, time.Now(), code
	}
	r.mu.Unlock()
	if ok {
		select {
		case r.events <- runtime.Event{Type: runtime.EventContainerExited, ContainerID: id, Pod: c.Pod}:
		default:
		}
	}
}

func (r *Runtime) RemoveContainer(_ context.Context, id string) error {
	r.mu.Lock()
	delete(r.containers, id)
	r.mu.Unlock()
	return nil
}

func (r *Runtime) ListContainers(context.Context) ([]*runtime.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*runtime.Container, 0, len(r.containers))
	for _, c := range r.containers {
		cc := *c
		out = append(out, &cc)
	}
	return out, nil
}

func (r *Runtime) Logs(_ context.Context, id string, _ runtime.LogOptions, w io.Writer) error {
	r.mu.Lock()
	c, ok := r.containers[id]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("container %s: %w", id, runtime.ErrNotFound)
	}
	_, err := fmt.Fprintf(w, "hollow container %s of pod %s/%s\n", c.Name, c.Pod.Namespace, c.Pod.Name)
	return err
}

func (r *Runtime) Exec(context.Context, string, runtime.ExecOptions) (int, error) { return 0, nil }

func (r *Runtime) Events() <-chan runtime.Event { return r.events }

func (r *Runtime) Close() error { return nil }
