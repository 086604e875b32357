package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// kubeletProxy serves KubeletAPI on the apiserver: it authorizes the request (pods/log get,
// pods/exec create, nodes/images create), finds the pod's node and forwards the call to that
// node's kubelet, at the node's InternalIP and status.daemonEndpoints.kubeletEndpoint.Port,
// as Kubernetes' apiserver reaches kubelets. Streams are relayed message by message.
//
// Authentication: the caller is authorized here like any API request; the apiserver then
// calls the kubelet over plain gRPC, and the kubelet trusts whoever reaches its port (no
// authentication yet, as the API itself has none; see docs/kubelet.md for the mTLS plan).
type kubeletProxy struct {
	corev1.UnimplementedKubeletAPIServer
	s *Server

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newKubeletProxy(s *Server) *kubeletProxy {
	return &kubeletProxy{s: s, conns: map[string]*grpc.ClientConn{}}
}

func (p *kubeletProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
}

func (p *kubeletProxy) kind(resource string) *scheme.Kind {
	k, err := p.s.registry.Scheme().ForName(resource)
	if err != nil {
		panic(err) // pods and nodes are built in
	}
	return k
}

// kubelet returns a client of node's kubelet.
func (p *kubeletProxy) kubelet(ctx context.Context, nodeName string) (corev1.KubeletAPIClient, error) {
	obj, err := p.s.registry.Get(ctx, p.kind("nodes"), "", nodeName, registry.GetOptions{})
	if err != nil {
		return nil, err
	}
	node := obj.(*corev1.Node)
	port := node.GetStatus().GetDaemonEndpoints().GetKubeletEndpoint().GetPort()
	ip := ""
	for _, a := range node.GetStatus().GetAddresses() {
		if a.GetType() == "InternalIP" {
			ip = a.GetAddress()
			break
		}
	}
	if port == 0 || ip == "" {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("node %q reports no kubelet endpoint (InternalIP and daemonEndpoints.kubeletEndpoint.Port)", nodeName))
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	p.mu.Lock()
	defer p.mu.Unlock()
	conn, ok := p.conns[addr]
	if !ok {
		conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(8<<20)))
		if err != nil {
			return nil, apierrors.NewInternal(fmt.Errorf("dial kubelet of %s at %s: %w", nodeName, addr, err))
		}
		p.conns[addr] = conn
	}
	return corev1.NewKubeletAPIClient(conn), nil
}

// podKubelet authorizes verb on the pod's subresource and returns the pod and its kubelet.
func (p *kubeletProxy) podKubelet(ctx context.Context, verb, sub, ns, name string) (*corev1.Pod, corev1.KubeletAPIClient, error) {
	pods := p.kind("pods")
	if err := p.s.authorize(ctx, pods, verb, sub, ns, name); err != nil {
		return nil, nil, err
	}
	obj, err := p.s.registry.Get(ctx, pods, ns, name, registry.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	pod := obj.(*corev1.Pod)
	node := pod.GetSpec().GetNodeName()
	if node == "" {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	c, err := p.kubelet(ctx, node)
	return pod, c, err
}

func (p *kubeletProxy) Logs(req *corev1.PodLogsRequest, stream grpc.ServerStreamingServer[corev1.PodLogsChunk]) error {
	ctx := stream.Context()
	pod, c, err := p.podKubelet(ctx, "get", "log", req.GetNamespace(), req.GetName())
	if err != nil {
		return err
	}
	fwd := proto.Clone(req).(*corev1.PodLogsRequest)
	fwd.PodUid = pod.GetMetadata().GetUid()
	in, err := c.Logs(ctx, fwd)
	if err != nil {
		return err
	}
	for {
		chunk, err := in.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(chunk); err != nil {
			return err
		}
	}
}

func (p *kubeletProxy) Exec(stream grpc.BidiStreamingServer[corev1.ExecRequest, corev1.ExecResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return apierrors.NewBadRequest("exec: the first message must be an ExecStart")
	}
	pod, c, err := p.podKubelet(ctx, "create", "exec", start.GetNamespace(), start.GetName())
	if err != nil {
		return err
	}
	out, err := c.Exec(ctx)
	if err != nil {
		return err
	}
	fwd := proto.Clone(start).(*corev1.ExecStart)
	fwd.PodUid = pod.GetMetadata().GetUid()
	if err := out.Send(&corev1.ExecRequest{Msg: &corev1.ExecRequest_Start{Start: fwd}}); err != nil {
		return err
	}
	go func() {
		// Client to kubelet: stdin, resizes, end of stdin; ends with either stream.
		for {
			m, err := stream.Recv()
			if err != nil {
				_ = out.CloseSend()
				return
			}
			if err := out.Send(m); err != nil {
				return
			}
		}
	}()
	for {
		m, err := out.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
}

func (p *kubeletProxy) LoadImage(stream grpc.ClientStreamingServer[corev1.LoadImageRequest, corev1.LoadImageResponse]) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	node := first.GetNodeName()
	if node == "" {
		return apierrors.NewBadRequestField("nodeName", "an image load names the node to load on")
	}
	if err := p.s.authorize(ctx, p.kind("nodes"), "create", "images", "", node); err != nil {
		return err
	}
	c, err := p.kubelet(ctx, node)
	if err != nil {
		return err
	}
	out, err := c.LoadImage(ctx)
	if err != nil {
		return err
	}
	for m := first; ; {
		if err := out.Send(m); err != nil {
			break // the kubelet ended the stream: CloseAndRecv has its answer
		}
		m, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	resp, err := out.CloseAndRecv()
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// serveLogs is the REST form of pods/log, as kubectl reads it: GET
// /api/v1/namespaces/NS/pods/NAME/log?container=&follow=&tailLines=&previous=&limitBytes=
// answers the log as text/plain, streamed while following.
func (p *kubeletProxy) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &corev1.PodLogsRequest{Namespace: r.PathValue("namespace"), Name: r.PathValue("name"),
		Container: q.Get("container"), Follow: q.Get("follow") == "true", Previous: q.Get("previous") == "true"}
	if v := q.Get("tailLines"); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		req.TailLines = &n
	}
	if v := q.Get("limitBytes"); v != "" {
		n, _ := strconv.ParseInt(v, 10, 64)
		req.LimitBytes = &n
	}
	ctx := r.Context()
	pod, c, err := p.podKubelet(ctx, "get", "log", req.Namespace, req.Name)
	if err != nil {
		writeStatus(w, apierrors.FromError(err))
		return
	}
	req.PodUid = pod.GetMetadata().GetUid()
	in, err := c.Logs(ctx, req)
	if err != nil {
		writeStatus(w, apierrors.FromError(err))
		return
	}
	first, err := in.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		writeStatus(w, apierrors.FromError(err))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	for chunk := first; chunk != nil; {
		if _, err := w.Write(chunk.GetData()); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		if chunk, err = in.Recv(); err != nil {
			return
		}
	}
}
