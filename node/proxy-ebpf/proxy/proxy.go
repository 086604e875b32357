//go:build linux

// Package proxy is Skiff's service proxy: it balances connections to Services' cluster IPs
// across their ready endpoints in strict rotation, in the kernel, with BPF programs on the
// cgroup2 socket hooks (see lb.c and docs/services.md). It follows Services and Endpoints
// through the event bus and writes only what changed into the BPF maps.
package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// Config configures a Proxy.
type Config struct {
	Datapath  DatapathConfig
	Informers *informer.Factory
	Logger    *slog.Logger
	// Metrics registers the proxy's metrics (nil: none).
	Metrics prometheus.Registerer
	// OnSynced is called once the maps hold every Service known at start.
	OnSynced func()
	// UninstallOnStop detaches the programs and removes the pinned maps when Run returns,
	// instead of leaving them for the next run: for a proxy whose node stops with it (skiff
	// up), where nothing is left to balance and a later run may use another pin directory.
	UninstallOnStop bool
}

// Proxy keeps the datapath's maps equal to the cluster's Services and Endpoints.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	dp        *Datapath
	services  *informer.Informer
	endpoints *informer.Informer
	queue     *workqueue.Queue[string]

	// Owned by the sync goroutine (the one worker): which service ports each Service has
	// programmed, and which Service owns a service port (a deleted Service's address may
	// already belong to a new one).
	portsOf map[string][]ServicePort
	ownerOf map[ServicePort]string
	names   *portNames

	syncLatency prometheus.Histogram
}

// New opens the datapath (loading and attaching the programs, or taking over those of an
// earlier run) and prepares the informers. Run it with Run.
func New(cfg Config) (*Proxy, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg.Datapath.Logger = log
	svcKind, err := scheme.Default().ForMessage(&corev1.Service{})
	if err != nil {
		return nil, err
	}
	epKind, err := scheme.Default().ForMessage(&corev1.Endpoints{})
	if err != nil {
		return nil, err
	}
	dp, err := OpenDatapath(cfg.Datapath)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: log, dp: dp,
		services:  cfg.Informers.For(svcKind),
		endpoints: cfg.Informers.For(epKind),
		queue:     workqueue.New[string](workqueue.WithName("proxy")),
		portsOf:   map[string][]ServicePort{},
		ownerOf:   map[ServicePort]string{},
		names:     newPortNames(),
		syncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skiff_proxy_sync_duration_seconds",
			Help:    "Time to write one Service's change into the BPF maps.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10)}),
	}
	enqueue := func(obj scheme.Object) { p.queue.Add(informer.KeyOf(obj)) }
	h := informer.HandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj scheme.Object) { enqueue(obj) }, DeleteFunc: enqueue}
	p.services.AddEventHandler(h)
	p.endpoints.AddEventHandler(h)
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(&collector{p: p}); err != nil {
			dp.Close()
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
		if err := cfg.Metrics.Register(p.syncLatency); err != nil {
			dp.Close()
			return nil, fmt.Errorf("register proxy metrics: %w", err)
		}
	}
	return p, nil
}

// Datapath is the proxy's BPF side (for tests and benchmarks).
func (p *Proxy) Datapath() *Datapath { return p.dp }

// Run syncs the maps with every Service, then follows changes until ctx ends. It leaves the
// programs attached and the maps pinned (a restarted proxy takes over without a gap), unless
// Config.UninstallOnStop.
func (p *Proxy) Run(ctx context.Context) error {
	defer func() {
		if !p.cfg.UninstallOnStop {
			p.dp.Close()
		} else if err := p.dp.Uninstall(); err != nil {
			p.log.Warn("uninstall the BPF programs", "error", err)
		}
	}()
	p.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, p.services, p.endpoints) {
		return nil
	}
	if err := p.syncAll(); err != nil {
		return err
	}
	if p.cfg.OnSynced != nil {
		p.cfg.OnSynced()
	}
	workqueue.Run(ctx, p.queue, 1, func(_ context.Context, key string) error { return p.syncService(key) })
	return nil
}

// desiredFor is what the Service called key asks for now.
func (p *Proxy) desiredFor(key string) map[ServicePort]desiredPort {
	obj, ok := p.services.Store().GetByKey(key)
	if !ok {
		return nil
	}
	var ep *corev1.Endpoints
	if e, ok := p.endpoints.Store().GetByKey(key); ok {
		ep = e.(*corev1.Endpoints)
	}
	return desiredPorts(obj.(*corev1.Service), ep)
}

// syncAll writes every Service at once (a start): one batch per map, for only what differs
// from what the maps hold, which after a restart is usually nothing.
func (p *Proxy) syncAll() error {
	start := time.Now()
	changes := map[ServicePort][]Backend{}
	for _, obj := range p.services.Store().List() {
		key := informer.KeyOf(obj)
		desired := p.desiredFor(key)
		p.record(key, desired)
		for sp, d := range desired {
			changes[sp] = d.backends
		}
	}
	for sp := range p.dp.Programmed() {
		if _, ok := changes[sp]; !ok {
			changes[sp] = nil
		}
	}
	before := p.dp.Writes()
	if err := p.dp.Apply(changes); err != nil {
		return fmt.Errorf("initial sync: %w", err)
	}
	p.log.Info("service maps synced", "servicePorts", len(p.ownerOf), "writes", p.dp.Writes()-before,
		"took", time.Since(start))
	return nil
}

// syncService writes one Service's change.
func (p *Proxy) syncService(key string) error {
	start := time.Now()
	desired := p.desiredFor(key)
	changes := make(map[ServicePort][]Backend, len(desired))
	for sp, d := range desired {
		changes[sp] = d.backends
	}
	for _, sp := range p.portsOf[key] {
		if _, still := desired[sp]; !still && p.ownerOf[sp] == key {
			changes[sp] = nil
		}
	}
	if err := p.dp.Apply(changes); err != nil {
		p.log.Warn("cannot program service", "service", key, "error", err)
		return err
	}
	p.record(key, desired)
	p.syncLatency.Observe(time.Since(start).Seconds())
	return nil
}

// record notes the service ports key now has.
func (p *Proxy) record(key string, desired map[ServicePort]desiredPort) {
	for _, sp := range p.portsOf[key] {
		if _, still := desired[sp]; !still && p.ownerOf[sp] == key {
			delete(p.ownerOf, sp)
			p.names.remove(sp)
		}
	}
	if len(desired) == 0 {
		delete(p.portsOf, key)
		return
	}
	ports := make([]ServicePort, 0, len(desired))
	for sp, d := range desired {
		ports = append(ports, sp)
		p.ownerOf[sp] = key
		p.names.set(sp, key, d.name)
	}
	p.portsOf[key] = ports
}

// collector exports each backend's counter, labelled with its Service.
type collector struct{ p *Proxy }

var (
	backendTrafficDesc = prometheus.NewDesc("skiff_proxy_backend_connections_total",
		"Connections (and unconnected UDP datagrams) the proxy sent to each backend of each service port.",
		[]string{"namespace", "service", "port", "protocol", "backend"}, nil)
	servicePortsDesc = prometheus.NewDesc("skiff_proxy_service_ports",
		"Service ports programmed into the BPF maps.", nil, nil)
	mapWritesDesc = prometheus.NewDesc("skiff_proxy_map_writes_total",
		"BPF map entries written or deleted by this process.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- backendTrafficDesc
	ch <- servicePortsDesc
	ch <- mapWritesDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.p.dp.Counts()
	if err != nil {
		c.p.log.Warn("cannot read backend counters", "error", err)
	}
	names := c.p.names.snapshot()
	for _, bc := range counts {
		n, ok := names[bc.Service]
		if !ok {
			continue
		}
		ns, svc := informer.SplitKey(n.key)
		ch <- prometheus.MustNewConstMetric(backendTrafficDesc, prometheus.CounterValue, float64(bc.Count),
			ns, svc, n.port, bc.Service.Proto.String(), bc.Backend.String())
	}
	ch <- prometheus.MustNewConstMetric(servicePortsDesc, prometheus.GaugeValue, float64(len(names)))
	ch <- prometheus.MustNewConstMetric(mapWritesDesc, prometheus.CounterValue, float64(c.p.dp.Writes()))
}

// portNames maps service ports to their Service and port name, for metric labels; read by
// scrapes, written by the sync goroutine.
type portNames struct {
	mu sync.Mutex
	m  map[ServicePort]portName
}

type portName struct{ key, port string }

func newPortNames() *portNames { return &portNames{m: map[ServicePort]portName{}} }

func (n *portNames) set(sp ServicePort, key, port string) {
	n.mu.Lock()
	n.m[sp] = portName{key, port}
	n.mu.Unlock()
}

func (n *portNames) remove(sp ServicePort) {
	n.mu.Lock()
	delete(n.m, sp)
	n.mu.Unlock()
}

func (n *portNames) snapshot() map[ServicePort]portName {
	n.mu.Lock()
	defer n.mu.Unlock()
	return maps.Clone(n.m)
}
