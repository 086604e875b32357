package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"

	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

// The kubelet API (logs, exec, image loads) is gRPC on ServerAddr: the apiserver forwards
// `skiff logs`, `skiff exec` and `skiff image load` here (see docs/kubelet.md for how it is
// authenticated).

// listen opens the kubelet API's listener (before registration, so the Node publishes the
// port).
func (k *Kubelet) listen() error {
	if k.cfg.ServerAddr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", k.cfg.ServerAddr)
	if err != nil {
		return fmt.Errorf("kubelet API listen %s: %w", k.cfg.ServerAddr, err)
	}
	k.serverLis = lis
	return nil
}

func (k *Kubelet) serverPort() int {
	if k.serverLis == nil {
		return 0
	}
	return k.serverLis.Addr().(*net.TCPAddr).Port
}

// ServerAddr is where the kubelet API listens ("" when it does not).
func (k *Kubelet) ServerAddr() string {
	if k.serverLis == nil {
		return ""
	}
	return k.serverLis.Addr().String()
}

// serve answers the kubelet API until ctx ends.
func (k *Kubelet) serve(ctx context.Context) {
	if k.serverLis == nil {
		return
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(8 << 20))
	corev1.RegisterKubeletAPIServer(srv, &kubeletAPI{k: k})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(k.serverLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			k.log.Error("kubelet API", "error", err)
		}
	}()
	<-ctx.Done()
	srv.Stop()
	<-done
}

type kubeletAPI struct {
	corev1.UnimplementedKubeletAPIServer
	k *Kubelet
}

// findContainer returns the runtime container that logs or exec address: the newest instance
// of the named container of the pod (or the one before it, previous).
func (k *Kubelet) findContainer(ctx context.Context, ns, name, uid, container string, previous bool) (*runtime.Container, error) {
	obj, ok := k.pods.Store().Get(ns, name)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod %q not found on node %s", name, k.cfg.NodeName)
	}
	pod := obj.(*corev1.Pod)
	if uid != "" && pod.GetMetadata().GetUid() != uid {
		return nil, status.Errorf(codes.NotFound, "pod %q (uid %s) not found on node %s", name, uid, k.cfg.NodeName)
	}
	var names []string
	for _, c := range append(append([]*corev1.Container{}, pod.GetSpec().GetInitContainers()...), pod.GetSpec().GetContainers()...) {
		names = append(names, c.GetName())
	}
	if container == "" {
		if len(pod.GetSpec().GetContainers()) != 1 {
			return nil, status.Errorf(codes.InvalidArgument, "a container name must be specified for pod %s, choose one of: %v", name, names)
		}
		container = pod.GetSpec().GetContainers()[0].GetName()
	}
	known := false
	for _, n := range names {
		known = known || n == container
	}
	if !known {
		return nil, status.Errorf(codes.InvalidArgument, "container %s is not valid for pod %s", container, name)
	}
	st, err := k.listFor(ctx, ns, name)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	mine, _ := st.split(pod.GetMetadata().GetUid())
	var cur, prev *runtime.Container
	for _, c := range mine.containers {
		if c.Name != container {
			continue
		}
		// A container created but not started yet (the next run, after a back-off) has
		// written nothing: the current log is that of the last run, as Kubernetes shows it.
		if c.StartedAt.IsZero() && c.FinishedAt.IsZero() {
			if _, err := os.Stat(c.LogPath); err != nil {
				continue
			}
		}
		if cur == nil {
			cur = c
		} else if prev == nil {
			prev = c
		}
	}
	if previous {
		if prev == nil {
			return nil, status.Errorf(codes.NotFound, "previous terminated container %q in pod %q not found", container, name)
		}
		return prev, nil
	}
	if cur == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "container %q in pod %q is waiting to start", container, name)
	}
	return cur, nil
}

// chunkWriter sends what it is given as PodLogsChunks.
type chunkWriter struct {
	send func(*corev1.PodLogsChunk) error
}

func (w chunkWriter) Write(p []byte) (int, error) {
	if err := w.send(&corev1.PodLogsChunk{Data: append([]byte(nil), p...)}); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (a *kubeletAPI) Logs(req *corev1.PodLogsRequest, stream grpc.ServerStreamingServer[corev1.PodLogsChunk]) error {
	ctx := stream.Context()
	c, err := a.k.findContainer(ctx, req.GetNamespace(), req.GetName(), req.GetPodUid(), req.GetContainer(), req.GetPrevious())
	if err != nil {
		return err
	}
	opts := runtime.LogOptions{Follow: req.GetFollow() && !req.GetPrevious(), TailLines: -1, LimitBytes: req.GetLimitBytes()}
	if req.TailLines != nil {
		opts.TailLines = req.GetTailLines()
	}
	if err := a.k.rt.Logs(ctx, c.ID, opts, chunkWriter{send: stream.Send}); err != nil && ctx.Err() == nil {
		return status.Errorf(codes.Internal, "logs of %s: %v", req.GetName(), err)
	}
	return nil
}

// execOutput sends a stream's output messages, one sender at a time.
type execOutput struct {
	mu     *sync.Mutex
	send   func(*corev1.ExecResponse) error
	stderr bool
}

func (w execOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	msg := &corev1.ExecResponse{Stdout: append([]byte(nil), p...)}
	if w.stderr {
		msg = &corev1.ExecResponse{Stderr: append([]byte(nil), p...)}
	}
	if err := w.send(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (a *kubeletAPI) Exec(stream grpc.BidiStreamingServer[corev1.ExecRequest, corev1.ExecResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil || len(start.GetCommand()) == 0 {
		return status.Error(codes.InvalidArgument, "exec: the first message must be an ExecStart with a command")
	}
	ctx := stream.Context()
	c, err := a.k.findContainer(ctx, start.GetNamespace(), start.GetName(), start.GetPodUid(), start.GetContainer(), false)
	if err != nil {
		return err
	}
	if c.State != runtime.ContainerRunning {
		return status.Errorf(codes.FailedPrecondition, "container %s is not running", c.Name)
	}
	var mu sync.Mutex
	opts := runtime.ExecOptions{Cmd: start.GetCommand(), TTY: start.GetTty(),
		Stdout: execOutput{mu: &mu, send: stream.Send}, Stderr: execOutput{mu: &mu, send: stream.Send, stderr: true}}
	resize := make(chan runtime.TerminalSize, 4)
	opts.Resize = resize
	var stdinW *io.PipeWriter
	if start.GetStdin() {
		var stdinR *io.PipeReader
		stdinR, stdinW = io.Pipe()
		opts.Stdin = stdinR
	}
	go func() {
		// The client's further messages: stdin, resizes, the end of stdin. Ends when the
		// stream does (the handler returning cancels it).
		defer func() {
			if stdinW != nil {
				stdinW.Close()
			}
		}()
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			switch {
			case m.GetResize() != nil:
				select {
				case resize <- runtime.TerminalSize{Width: uint16(m.GetResize().GetWidth()), Height: uint16(m.GetResize().GetHeight())}:
				default:
				}
			case m.GetCloseStdin():
				if stdinW != nil {
					stdinW.Close()
				}
			case m.GetStdin() != nil && stdinW != nil:
				if _, err := stdinW.Write(m.GetStdin()); err != nil {
					return
				}
			}
		}
	}()
	code, err := a.k.rt.Exec(ctx, c.ID, opts)
	if err != nil {
		return status.Errorf(codes.Internal, "exec in %s: %v", c.Name, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return stream.Send(&corev1.ExecResponse{ExitCode: proto.Int32(int32(code))})
}

func (a *kubeletAPI) LoadImage(stream grpc.ClientStreamingServer[corev1.LoadImageRequest, corev1.LoadImageResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if n := first.GetNodeName(); n != "" && n != a.k.cfg.NodeName {
		return status.Errorf(codes.InvalidArgument, "this is node %s, not %s", a.k.cfg.NodeName, n)
	}
	pr, pw := io.Pipe()
	go func() {
		data := first.GetData()
		for {
			if len(data) > 0 {
				if _, err := pw.Write(data); err != nil {
					return
				}
			}
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			data = m.GetData()
		}
	}()
	imgs, err := a.k.rt.ImportImages(stream.Context(), pr)
	pr.Close()
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "load image on %s: %v", a.k.cfg.NodeName, err)
	}
	resp := &corev1.LoadImageResponse{NodeName: a.k.cfg.NodeName}
	for _, img := range imgs {
		resp.Images = append(resp.Images, img.Name)
		a.k.log.Info("image loaded", "image", img.Name, "id", img.ID)
	}
	// The node's status lists its images: refresh it now rather than at the next interval.
	go func() {
		if err := a.k.syncNodeStatus(context.WithoutCancel(stream.Context())); err != nil {
			a.k.log.Warn("node status after image load", "error", err)
		}
	}()
	return stream.SendAndClose(resp)
}
