package scheduler

import (
	"context"
	"testing"
	"time"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// fakeClock is a manual clock for the queue's back-off.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func withPriority(p *corev1.Pod, prio int32) *corev1.Pod {
	p.Spec.Priority = &prio
	return p
}

func popNow(t *testing.T, q *Queue) *queuedPod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	return q.Pop(ctx)
}

func TestQueueOrdersByPriorityThenArrival(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := NewQueue(clk.now)
	for _, p := range []*corev1.Pod{withPriority(pod("low", "", ""), 1), pod("zero-a", "", ""),
		withPriority(pod("high", "", ""), 100), pod("zero-b", "", "")} {
		q.Add(NewPodInfo(p))
		clk.advance(time.Millisecond)
	}
	var got []string
	for range 4 {
		got = append(got, popNow(t, q).info.Pod.Metadata.Name)
	}
	want := []string{"high", "low", "zero-a", "zero-b"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("popped %v; want %v", got, want)
		}
	}
	if qp := popNow(t, q); qp != nil {
		t.Fatalf("empty queue popped %s", qp.info.Key)
	}
}

// An unschedulable pod waits for a cluster change; a change moves it back (to back-off first
// if its back-off has not expired); back-off doubles per attempt up to 10 s.
func TestQueueUnschedulableAndBackoff(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := NewQueue(clk.now)
	q.Add(NewPodInfo(pod("p", "", "")))
	qp := popNow(t, q)
	q.Requeue(qp, true)
	if a, b, u := q.Lengths(); a != 0 || b != 0 || u != 1 {
		t.Fatalf("after unschedulable: active %d backoff %d unschedulable %d", a, b, u)
	}
	clk.advance(30 * time.Second)
	q.flush()
	if a, _, u := q.Lengths(); a != 0 || u != 1 {
		t.Fatal("an unschedulable pod went back without a cluster change")
	}
	q.MoveAllToActiveOrBackoff()
	if qp = popNow(t, q); qp == nil || qp.attempts != 2 {
		t.Fatalf("after a cluster change: %v", qp)
	}
	// A pod that fails for another reason backs off: 2 s after its second attempt.
	q.Requeue(qp, false)
	clk.advance(1900 * time.Millisecond)
	q.flush()
	if popNow(t, q) != nil {
		t.Fatal("popped before the back-off expired")
	}
	clk.advance(200 * time.Millisecond)
	q.flush()
	if popNow(t, q) == nil {
		t.Fatal("not popped after the back-off expired")
	}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 9: 10 * time.Second} {
		if got := backoffFor(attempts); got != want {
			t.Errorf("backoffFor(%d) = %v; want %v", attempts, got, want)
		}
	}
}

// A cluster change that happens while a pod is being scheduled may be the one that lets it
// fit: the pod goes to back-off, not to wait for another change.
func TestQueueChangeDuringCycle(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := NewQueue(clk.now)
	q.Add(NewPodInfo(pod("p", "", "")))
	qp := popNow(t, q)
	q.MoveAllToActiveOrBackoff() // e.g. a node was added while p was in flight
	q.Requeue(qp, true)
	if _, b, u := q.Lengths(); b != 1 || u != 0 {
		t.Fatalf("backoff %d unschedulable %d; want the pod in back-off", b, u)
	}
}

// Updates that change what a waiting pod asks for retry it at once; status-only updates
// (such as the scheduler's own PodScheduled=False) do not.
func TestQueueUpdates(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	q := NewQueue(clk.now)
	p := pod("p", "", "")
	q.Add(NewPodInfo(p))
	q.Requeue(popNow(t, q), true)

	withStatus := pod("p", "", "")
	withStatus.Status = &corev1.PodStatus{Conditions: []*corev1.PodCondition{{Type: "PodScheduled", Status: "False"}}}
	q.Add(NewPodInfo(withStatus))
	if a, _, u := q.Lengths(); a != 0 || u != 1 {
		t.Fatal("a status update moved the pod")
	}
	tolerating := pod("p", "", "")
	tolerating.Spec.Tolerations = []*corev1.Toleration{{Operator: "Exists"}}
	q.Add(NewPodInfo(tolerating))
	if qp := popNow(t, q); qp == nil || len(qp.info.tolerations) != 1 {
		t.Fatalf("a spec update did not move the pod with its new spec: %v", qp)
	}
	// Deleted while in flight: requeueing it is a no-op.
	q.Delete("default/p")
	q.Requeue(&queuedPod{info: NewPodInfo(p)}, true)
	if a, b, u := q.Lengths(); a+b+u != 0 {
		t.Fatal("a deleted pod came back")
	}
}
