package apiserver

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// metrics are the apiserver's Prometheus series, on a registry of the server's own.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_apiserver_requests_total",
			Help: "API requests by resource, verb, subresource and HTTP-equivalent code.",
		}, []string{"resource", "verb", "subresource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "skiff_apiserver_request_duration_seconds",
			Help:    "API request latency by resource and verb, measured in the server.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"resource", "verb", "subresource"}),
	}
	m.registry.MustRegister(m.requests, m.latency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(resource, verb, sub string, code int32, d time.Duration) {
	m.requests.WithLabelValues(resource, verb, sub, strconv.Itoa(int(code))).Inc()
	m.latency.WithLabelValues(resource, verb, sub).Observe(d.Seconds())
}

// watchObjectCache exports the registry's object cache counters (registry.ListEncoded): a
// list of unchanged objects should be all hits.
func (m *metrics) watchObjectCache(r *registry.Registry) {
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_list_cache_hits_total",
			Help: "Listed objects whose encoding came from the object cache.",
		}, func() float64 { h, _ := r.ObjectCacheStats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_list_cache_misses_total",
			Help: "Listed objects encoded (or decoded) anew: a new version, or evicted.",
		}, func() float64 { _, m := r.ObjectCacheStats(); return float64(m) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_list_reads_total",
			Help: "Whole-collection etcd reads made for lists.",
		}, func() float64 { n, _ := r.RangeStats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_list_reads_shared_total",
			Help: "Lists that shared a read with lists of the same collection that arrived together.",
		}, func() float64 { _, n := r.RangeStats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_list_evaluated_objects_total",
			Help: "Stored objects lists examined against their selectors.",
		}, func() float64 { n, _ := r.ListStats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_list_returned_objects_total",
			Help: "Objects lists returned.",
		}, func() float64 { _, n := r.ListStats(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_write_conflicts_total",
			Help: "Write attempts that lost to a concurrent writer (retried, or 409 for a conditional write).",
		}, func() float64 { return float64(r.WriteConflicts()) }))
}

// watchLiveFeeds exports what the watches' shared live feeds did: many watches of one kind
// should cost one subscription and one decode per change, not one each.
func (m *metrics) watchLiveFeeds(l *bus.Live) {
	counter := func(name, help string, v func(bus.LiveStats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v(l.Stats())) })
	}
	m.registry.MustRegister(
		counter("skiff_apiserver_watch_feeds_started_total", "Live feeds started for watches (one per kind, or kind and namespace, while watched).",
			func(s bus.LiveStats) int64 { return s.Feeds }),
		counter("skiff_apiserver_watch_live_decodes_total", "Changes decoded by the watches' live feeds (once per change, whatever the number of watches).",
			func(s bus.LiveStats) int64 { return s.Decodes }),
		counter("skiff_apiserver_watch_stream_repairs_total", "Times a live feed read the stream to start or to fill a gap.",
			func(s bus.LiveStats) int64 { return s.Repairs }),
		counter("skiff_apiserver_watch_catch_ups_total", "Times a watch caught up from the stream instead of its feed's recent events.",
			func(s bus.LiveStats) int64 { return s.Resyncs }))
}

// watchInitialLists exports how watches that start with the current state got it: read from
// etcd, or shared with a concurrent watch of the same selection.
func (m *metrics) watchInitialLists(l *sharedLists) {
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "skiff_apiserver_watch_initial_lists_read_total",
			Help: "Initial states of watches (watch-list, or a watch without resourceVersion) read from etcd."},
			func() float64 { r, _ := l.stats(); return float64(r) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "skiff_apiserver_watch_initial_lists_shared_total",
			Help: "Initial states of watches shared with another watch of the same selection (at least as new as needed)."},
			func() float64 { _, s := l.stats(); return float64(s) }))
}

// watchEncodings exports how often REST watches reused an object's JSON another watch made.
func (m *metrics) watchEncodings(e *watchEncodings) {
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_watch_encodes_total",
			Help: "Objects REST watches encoded to JSON (once per object, whatever the number of watches).",
		}, func() float64 { return float64(e.encodes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "skiff_apiserver_watch_encodes_reused_total",
			Help: "Objects REST watches sent with the JSON another watch had made.",
		}, func() float64 { return float64(e.reuses.Load()) }))
}
