package workqueue

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter decides how long an item waits before it is retried.
type RateLimiter[T comparable] interface {
	// When records a failure of item and returns how long to wait before retrying it.
	When(item T) time.Duration
	// Forget clears item's failure history.
	Forget(item T)
	// NumRequeues returns how many failures of item are recorded.
	NumRequeues(item T) int
}

// DefaultControllerRateLimiter is client-go's default: per-item exponential back-off
// from 5ms to 1000s, and an overall 10 qps (burst 100) bucket so that many failing
// items at once cannot hammer the API server.
func DefaultControllerRateLimiter[T comparable]() RateLimiter[T] {
	return NewMaxOfRateLimiter(
		NewExponentialRateLimiter[T](5*time.Millisecond, 1000*time.Second),
		NewBucketRateLimiter[T](10, 100),
	)
}

// NewExponentialRateLimiter returns a limiter whose delay for an item is
// base*2^failures, capped at max.
func NewExponentialRateLimiter[T comparable](base, max time.Duration) RateLimiter[T] {
	return &exponentialLimiter[T]{base: base, max: max, failures: map[T]int{}}
}

type exponentialLimiter[T comparable] struct {
	base, max time.Duration

	mu       sync.Mutex
	failures map[T]int
}

func (l *exponentialLimiter[T]) When(item T) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.failures[item]
	l.failures[item] = n + 1
	// In float64 so that large failure counts saturate instead of overflowing.
	d := float64(l.base) * math.Pow(2, float64(n))
	if d >= float64(l.max) {
		return l.max
	}
	return time.Duration(d)
}

func (l *exponentialLimiter[T]) Forget(item T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, item)
}

func (l *exponentialLimiter[T]) NumRequeues(item T) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures[item]
}

// NewBucketRateLimiter returns a limiter shared by all items: a token bucket
// (golang.org/x/time/rate) holding up to burst tokens, refilled at qps per second. Each When
// reserves a token, possibly one not yet refilled, and returns how long until that token
// exists. It panics unless qps is positive and finite and burst is at least 1.
func NewBucketRateLimiter[T comparable](qps float64, burst int) RateLimiter[T] {
	if !(qps > 0) || math.IsInf(qps, 1) || burst < 1 {
		panic(fmt.Sprintf("workqueue: invalid bucket rate limiter qps=%v burst=%d", qps, burst))
	}
	return &bucketLimiter[T]{limiter: rate.NewLimiter(rate.Limit(qps), burst)}
}

type bucketLimiter[T comparable] struct {
	limiter *rate.Limiter
}

func (l *bucketLimiter[T]) When(T) time.Duration { return l.limiter.Reserve().Delay() }

func (l *bucketLimiter[T]) Forget(T) {}

func (l *bucketLimiter[T]) NumRequeues(T) int { return 0 }

// NewMaxOfRateLimiter combines limiters: When asks every limiter (so each records the
// failure) and returns the longest delay; NumRequeues is the largest count.
func NewMaxOfRateLimiter[T comparable](limiters ...RateLimiter[T]) RateLimiter[T] {
	return maxOfLimiter[T](limiters)
}

type maxOfLimiter[T comparable] []RateLimiter[T]

func (m maxOfLimiter[T]) When(item T) time.Duration {
	var d time.Duration
	for _, l := range m {
		d = max(d, l.When(item))
	}
	return d
}

func (m maxOfLimiter[T]) Forget(item T) {
	for _, l := range m {
		l.Forget(item)
	}
}

func (m maxOfLimiter[T]) NumRequeues(item T) int {
	var n int
	for _, l := range m {
		n = max(n, l.NumRequeues(item))
	}
	return n
}
