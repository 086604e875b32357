package workqueue

import (
	"testing"
	"time"
)

func TestExponentialRateLimiter(t *testing.T) {
	l := NewExponentialRateLimiter[string](5*time.Millisecond, 50*time.Millisecond)
	ms := time.Millisecond
	for i, want := range []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 50 * ms, 50 * ms} {
		if got := l.When("a"); got != want {
			t.Fatalf("When #%d = %v, want %v", i+1, got, want)
		}
	}
	if got := l.NumRequeues("a"); got != 6 {
		t.Fatalf("NumRequeues = %d, want 6", got)
	}
	if got := l.When("b"); got != 5*ms {
		t.Fatalf("other item: When = %v, want 5ms (back-off is per item)", got)
	}
	l.Forget("a")
	if got := l.NumRequeues("a"); got != 0 {
		t.Fatalf("NumRequeues after Forget = %d, want 0", got)
	}
	if got := l.When("a"); got != 5*ms {
		t.Fatalf("When after Forget = %v, want 5ms", got)
	}
}

func TestExponentialRateLimiterSaturates(t *testing.T) {
	l := NewExponentialRateLimiter[int](time.Millisecond, 1000*time.Second)
	var last time.Duration
	for i := range 200 { // 2^200 overflows any integer
		got := l.When(1)
		if got < last || got > 1000*time.Second {
			t.Fatalf("When #%d = %v after %v: want non-decreasing and <= 1000s", i+1, got, last)
		}
		last = got
	}
	if last != 1000*time.Second {
		t.Fatalf("final When = %v, want 1000s", last)
	}
}

func TestBucketRateLimiterBurstThenSpaces(t *testing.T) {
	l := NewBucketRateLimiter[int](1, 3) // 1 token/s, bucket of 3
	for i := range 3 {
		if got := l.When(i); got != 0 {
			t.Fatalf("burst When #%d = %v, want 0", i+1, got)
		}
	}
	// Tokens are handed out ahead of the refill: the 4th waits ~1s, the 5th ~2s. Some
	// real time passes between calls, hence the ranges.
	if got := l.When(3); got <= 500*time.Millisecond || got > time.Second {
		t.Fatalf("4th When = %v, want in (0.5s, 1s]", got)
	}
	if got := l.When(4); got <= 1500*time.Millisecond || got > 2*time.Second {
		t.Fatalf("5th When = %v, want in (1.5s, 2s]", got)
	}
	if got := l.NumRequeues(0); got != 0 {
		t.Fatalf("NumRequeues = %d, want 0", got)
	}
}

func TestBucketRateLimiterRefills(t *testing.T) {
	l := NewBucketRateLimiter[int](100, 1) // a token every 10ms
	if got := l.When(0); got != 0 {
		t.Fatalf("first When = %v, want 0", got)
	}
	time.Sleep(50 * time.Millisecond)
	if got := l.When(0); got != 0 {
		t.Fatalf("When after refill = %v, want 0", got)
	}
	if got := l.When(0); got <= 0 {
		t.Fatalf("When beyond burst = %v, want > 0 (refill must be capped at burst)", got)
	}
}

func TestBucketRateLimiterRejectsBadConfig(t *testing.T) {
	for _, c := range []struct {
		qps   float64
		burst int
	}{{0, 1}, {-1, 1}, {1, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewBucketRateLimiter(%v, %d) did not panic", c.qps, c.burst)
				}
			}()
			NewBucketRateLimiter[int](c.qps, c.burst)
		}()
	}
}

func TestMaxOfRateLimiter(t *testing.T) {
	exp := NewExponentialRateLimiter[string](10*time.Millisecond, time.Hour)
	l := NewMaxOfRateLimiter(exp, NewBucketRateLimiter[string](1, 2))
	if got := l.When("a"); got != 10*time.Millisecond {
		t.Fatalf("When #1 = %v, want 10ms (exponential beats a full bucket)", got)
	}
	if got := l.When("a"); got != 20*time.Millisecond {
		t.Fatalf("When #2 = %v, want 20ms", got)
	}
	if got := l.When("a"); got < 500*time.Millisecond {
		t.Fatalf("When #3 = %v, want the empty bucket's ~1s", got)
	}
	if got := l.NumRequeues("a"); got != 3 {
		t.Fatalf("NumRequeues = %d, want 3", got)
	}
	l.Forget("a")
	if got := exp.NumRequeues("a"); got != 0 {
		t.Fatalf("Forget did not reach the exponential limiter: NumRequeues = %d", got)
	}
}

func TestDefaultControllerRateLimiter(t *testing.T) {
	l := DefaultControllerRateLimiter[int]()
	if got := l.When(0); got != 5*time.Millisecond {
		t.Fatalf("first When = %v, want 5ms", got)
	}
	if got := l.When(0); got != 10*time.Millisecond {
		t.Fatalf("second When = %v, want 10ms", got)
	}
	// 98 more distinct items use up the burst of 100; the next one waits on the bucket.
	for i := 1; i < 99; i++ {
		l.When(i)
	}
	if got := l.When(99); got < 50*time.Millisecond {
		t.Fatalf("101st When = %v, want ~100ms from the 10 qps bucket", got)
	}
}
