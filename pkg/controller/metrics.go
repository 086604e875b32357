package controller

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the series every controller reports, labelled by controller name, so that
// several controllers in one process (rs-controller, skiff up) share one set.
type Metrics struct {
	syncs    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the controllers' series on reg (nil: not exported); registering twice
// on the same registry shares the series.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_controller_syncs_total",
			Help: "Reconciles by controller and result (success, error)."}, []string{"controller", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "skiff_controller_sync_duration_seconds",
			Help: "Time of one reconcile.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"controller"}),
	}
	if reg == nil {
		return m
	}
	m.syncs = register(reg, m.syncs)
	m.duration = register(reg, m.duration)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// Observe wraps one reconcile of controller name, recording its result and duration.
func (m *Metrics) Observe(name string, start time.Time, err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	m.syncs.WithLabelValues(name, result).Inc()
	m.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
}
