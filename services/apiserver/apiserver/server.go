// Package apiserver is Skiff's API server: typed gRPC services per kind and the same API over
// REST on Kubernetes' paths (grpc-gateway), backed by etcd through the registry. It is the only
// component that talks to etcd.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/limits"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/services/apiserver/admission"
	"github.com/skiff-project/skiff/services/apiserver/authz"
	"github.com/skiff-project/skiff/services/apiserver/ipalloc"
	"github.com/skiff-project/skiff/services/apiserver/openapi"
	"github.com/skiff-project/skiff/services/apiserver/publisher"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// maxMessageBytes bounds the gRPC messages the server sends; large lists are the reason it
// exceeds the 4 MiB default. What it receives is bounded by limits.MaxRequestBodyBytes.
const maxMessageBytes = 256 << 20

// flowWindowBytes is the HTTP/2 flow-control window. gRPC's 64 KiB default makes a 1 MiB list
// wait for a dozen window updates; a large window sends it in one go.
const flowWindowBytes = 16 << 20

// Config configures a Server.
type Config struct {
	// EtcdEndpoints are dialled when Etcd is nil.
	EtcdEndpoints []string
	// Etcd is an existing client (e.g. to an embedded etcd); the server does not close it.
	Etcd *clientv3.Client
	// NATSURL is the event bus. Empty: no events are published and Watch is unavailable.
	NATSURL string
	// Stream configures the bus's JetStream stream (zero value: bus.DefaultStreamConfig()).
	Stream *bus.StreamConfig
	// Identity names this replica in the publisher election (default: host name and pid).
	Identity string
	// GRPCAddr and HTTPAddr are listen addresses; port 0 picks a free port.
	GRPCAddr string
	HTTPAddr string

	// ServiceClusterIPRange is the CIDR Services' cluster IPs come from (default
	// ipalloc.DefaultRange, 10.96.0.0/12). Every apiserver on one etcd must use the same.
	ServiceClusterIPRange string
	// BookmarkInterval is how often watches that allow bookmarks get one (0: 30 s).
	BookmarkInterval time.Duration

	Authorizer authz.Authorizer // nil: allow all
	// Admission plugins run after the built-in ones (DefaultTolerationSeconds).
	Admission *admission.Chain
	Logger    *slog.Logger // nil: slog.Default()
	// DefaultNotReadyTolerationSeconds and DefaultUnreachableTolerationSeconds are the
	// tolerationSeconds of the tolerations every pod created without one gets (nil: 300, as
	// Kubernetes' --default-not-ready-toleration-seconds and
	// --default-unreachable-toleration-seconds).
	DefaultNotReadyTolerationSeconds    *int64
	DefaultUnreachableTolerationSeconds *int64
	// Profiling serves Go's profiles under /debug/pprof/ on the HTTP address (as
	// kube-apiserver's --profiling); off by default: they are not behind authorization.
	Profiling bool
}

// admissionChain is the built-in plugins followed by the configured ones.
func (cfg *Config) admissionChain() *admission.Chain {
	tol := admission.DefaultTolerationSeconds{NotReady: admission.DefaultTolerationSecondsDefault,
		Unreachable: admission.DefaultTolerationSecondsDefault}
	if v := cfg.DefaultNotReadyTolerationSeconds; v != nil {
		tol.NotReady = *v
	}
	if v := cfg.DefaultUnreachableTolerationSeconds; v != nil {
		tol.Unreachable = *v
	}
	chain := &admission.Chain{Mutators: []admission.Mutator{tol}}
	if cfg.Admission != nil {
		chain.Mutators = append(chain.Mutators, cfg.Admission.Mutators...)
		chain.Validators = append(chain.Validators, cfg.Admission.Validators...)
	}
	return chain
}

// Server is a running apiserver's state.
type Server struct {
	cfg              Config
	log              *slog.Logger
	bookmarkInterval time.Duration
	etcd             *clientv3.Client
	ownsEtcd         bool
	registry         *registry.Registry
	authorizer       authz.Authorizer
	metrics          *metrics

	nats      *nats.Conn
	js        jetstream.JetStream
	publisher *publisher.Publisher
	// busLive serves every watch: one live feed per kind (or kind and namespace) shared by
	// all the server's watches of it.
	busLive *bus.Live
	// initialLists shares the initial state among watches that start with it.
	initialLists sharedLists
	// watchEncodings shares REST watches' JSON of the objects they send (watchencode.go).
	watchEncodings *watchEncodings

	// stopping is cancelled when shutdown begins, to end long-running watches that would
	// otherwise hold a graceful stop until its deadline.
	stopping         context.Context
	stopStreams      context.CancelFunc
	grpcLis, httpLis net.Listener
	grpcServer       *grpc.Server
	health           *health.Server
	// inproc holds every unary handler by full method name, for the REST gateway.
	inproc     map[string]func(context.Context, proto.Message) (proto.Message, error)
	httpServer *http.Server
	// kubelets forwards logs, exec and image loads to nodes' kubelets.
	kubelets *kubeletProxy
}

// New connects to etcd, makes sure the built-in namespaces exist and opens the listeners. Call
// Serve to answer requests.
func New(ctx context.Context, cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, authorizer: cfg.Authorizer, metrics: newMetrics(), watchEncodings: newWatchEncodings(watchEncodingsKept), bookmarkInterval: cfg.BookmarkInterval,
		inproc: map[string]func(context.Context, proto.Message) (proto.Message, error){}}
	s.stopping, s.stopStreams = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.authorizer == nil {
		s.authorizer = authz.AllowAll{}
	}
	s.etcd = cfg.Etcd
	if s.etcd == nil {
		c, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 5 * time.Second,
			Logger: zap.NewNop(), Context: ctx})
		if err != nil {
			return nil, fmt.Errorf("connect to etcd %v: %w", cfg.EtcdEndpoints, err)
		}
		s.etcd, s.ownsEtcd = c, true
	}
	cidr := cfg.ServiceClusterIPRange
	if cidr == "" {
		cidr = ipalloc.DefaultRange
	}
	serviceIPs, err := ipalloc.ParseRange(cidr)
	if err != nil {
		s.closeEtcd()
		return nil, err
	}
	s.registry = registry.New(storage.New(s.etcd), scheme.Default(), registry.Options{Admission: cfg.admissionChain(),
		ServiceIPRange: serviceIPs})
	s.metrics.watchObjectCache(s.registry)
	if err := s.bootstrap(ctx); err != nil {
		s.closeEtcd()
		return nil, err
	}
	if cfg.NATSURL != "" {
		if err := s.connectBus(ctx); err != nil {
			s.closeEtcd()
			return nil, err
		}
	}
	if err := s.listen(ctx); err != nil {
		s.closeBus()
		s.closeEtcd()
		return nil, err
	}
	return s, nil
}

// connectBus connects to NATS and prepares the publisher. The connection retries forever: a
// NATS restart pauses publishing (the publisher resumes from the stream), it loses nothing.
func (s *Server) connectBus(ctx context.Context) error {
	natsLog := s.log.With("component", "nats-client")
	nc, err := nats.Connect(s.cfg.NATSURL, nats.Name("skiff-apiserver"), nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(100*time.Millisecond),
		// Without handlers nats.go prints asynchronous errors (a slow consumer, a failed
		// reconnect) to stderr as plain text; they belong in the structured log.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				natsLog.Warn("NATS error", "subject", sub.Subject, "error", err)
				return
			}
			natsLog.Warn("NATS error", "error", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				natsLog.Warn("NATS disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { natsLog.Info("NATS reconnected", "url", nc.ConnectedUrl()) }))
	if err != nil {
		return fmt.Errorf("connect to NATS %s: %w", s.cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	streamCfg := bus.DefaultStreamConfig()
	if s.cfg.Stream != nil {
		streamCfg = *s.cfg.Stream
	}
	identity := s.cfg.Identity
	if identity == "" {
		host, _ := os.Hostname()
		identity = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	pub, err := publisher.New(ctx, publisher.Config{Etcd: s.etcd, NATS: nc, Scheme: s.registry.Scheme(),
		Prefix: s.registry.Prefix(), Stream: streamCfg, Identity: identity, Logger: s.log,
		Metrics: s.metrics.registry})
	if err != nil {
		nc.Close()
		return err
	}
	s.nats, s.js, s.publisher = nc, js, pub
	s.busLive = bus.NewLive(js, s.registry.Scheme())
	s.metrics.watchLiveFeeds(s.busLive)
	s.metrics.watchInitialLists(&s.initialLists)
	s.metrics.watchEncodings(s.watchEncodings)
	return nil
}

func (s *Server) closeBus() {
	if s.nats != nil {
		s.nats.Close()
	}
}

// builtinNamespaces exist from the start, as in Kubernetes: kube-system for the control plane
// (its leader Leases), kube-node-lease for nodes' heartbeat Leases, kube-public.
var builtinNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// bootstrap creates the namespaces that exist from the start and the `kubernetes` Service,
// waiting for etcd if needed.
func (s *Server) bootstrap(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		var err error
		for _, ns := range builtinNamespaces {
			if err = s.registry.EnsureNamespace(ctx, ns); err != nil {
				break
			}
		}
		if err == nil {
			err = s.registry.EnsureAPIServerService(ctx)
		}
		if err == nil {
			return nil
		}
		s.log.Warn("waiting for etcd", "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("bootstrap namespaces: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (s *Server) listen(ctx context.Context) error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("listen gRPC on %s: %w", s.cfg.GRPCAddr, err)
	}
	if s.httpLis, err = net.Listen("tcp", s.cfg.HTTPAddr); err != nil {
		s.grpcLis.Close()
		return fmt.Errorf("listen HTTP on %s: %w", s.cfg.HTTPAddr, err)
	}

	wc, err := newWireCodec()
	if err != nil {
		return err
	}
	s.grpcServer = grpc.NewServer(grpc.MaxRecvMsgSize(limits.MaxRequestBodyBytes), grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.InitialWindowSize(flowWindowBytes), grpc.InitialConnWindowSize(flowWindowBytes), grpc.ForceServerCodecV2(wc))
	for _, k := range s.registry.Scheme().Kinds() {
		desc, err := s.serviceDesc(k)
		if err != nil {
			return err
		}
		s.grpcServer.RegisterService(desc, s)
	}
	s.kubelets = newKubeletProxy(s)
	corev1.RegisterKubeletAPIServer(s.grpcServer, s.kubelets)
	metav1.RegisterObjectAPIServer(s.grpcServer, objectAPI{s: s})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpcServer, s.health)
	reflection.Register(s.grpcServer)

	// The REST gateway calls the same handlers in process, so both paths share one
	// implementation.
	gw, err := newGateway(ctx, &inprocConn{handlers: s.inproc}, s.tableRewriter)
	if err != nil {
		return err
	}
	docs, err := openapi.Build(s.registry.Scheme())
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	if s.cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	}
	s.registerDiscovery(mux)
	registerOpenAPI(mux, docs)
	mux.HandleFunc("GET /api/v1/namespaces/{namespace}/pods/{name}/log", s.kubelets.serveLogs)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = withTable(r)
		if isWatch(r) {
			s.serveWatch(w, r)
			return
		}
		if route, ok := s.extraOperation(r); ok {
			s.serveExtra(w, r, route)
			return
		}
		gw.ServeHTTP(w, withJSONList(r))
	}))
	// The REST front checks paths, bodies and parameters before the mux, which would redirect
	// unclean paths, sees them.
	s.httpServer = &http.Server{Handler: newRESTFront(mux), ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// readyz answers 200 when etcd answers a read.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.etcd.Get(ctx, s.registry.Prefix()+"/namespaces/default", clientv3.WithCountOnly()); err != nil {
		http.Error(w, "etcd: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// GRPCAddr is the address the gRPC API listens on.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the address the REST API, health and metrics listen on.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// Registry exposes the object registry (for in-process components and tests).
func (s *Server) Registry() *registry.Registry { return s.registry }

// Serve answers requests until ctx is cancelled, then stops gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.grpcServer.Serve(s.grpcLis) }()
	go func() {
		if err := s.httpServer.Serve(s.httpLis); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	pubDone := make(chan struct{})
	pubCtx, stopPublisher := context.WithCancel(ctx)
	if s.publisher != nil {
		go func() { defer close(pubDone); _ = s.publisher.Run(pubCtx) }()
	} else {
		close(pubDone)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.log.Info("apiserver serving", "grpc", s.GRPCAddr(), "http", s.HTTPAddr())

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.health.Shutdown()
	s.stopStreams()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.httpServer.Shutdown(shutdownCtx)
	stopped := make(chan struct{})
	go func() { s.grpcServer.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		s.grpcServer.Stop()
	}
	stopPublisher()
	<-pubDone
	s.kubelets.close()
	s.closeBus()
	s.closeEtcd()
	return err
}

func (s *Server) closeEtcd() {
	if s.ownsEtcd {
		_ = s.etcd.Close()
	}
}
