package kubelet

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the kubelet's Prometheus metrics (names as Kubernetes' kubelet has them where
// one exists).
type metrics struct {
	syncDuration   prometheus.Observer
	startupLatency prometheus.Observer
	statusWrites   prometheus.Counter
	heartbeats     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, node string) *metrics {
	labels := prometheus.Labels{"node": node}
	sync := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubelet_pod_worker_duration_seconds",
		Help: "Duration of one pod sync.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)})
	startup := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubelet_pod_start_duration_seconds",
		Help: "From the kubelet first seeing a pod to its Running status written.", ConstLabels: labels,
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)})
	writes := prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_pod_status_writes_total",
		Help: "Pod status updates written.", ConstLabels: labels})
	beats := prometheus.NewCounter(prometheus.CounterOpts{Name: "kubelet_node_lease_renewals_total",
		Help: "Node Lease renewals.", ConstLabels: labels})
	if reg != nil {
		for _, c := range []prometheus.Collector{sync, startup, writes, beats} {
			_ = reg.Register(c)
		}
	}
	return &metrics{syncDuration: sync, startupLatency: startup, statusWrites: writes, heartbeats: beats}
}
