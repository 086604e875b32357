package scheduler

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Queue timings, Kubernetes' defaults.
const (
	initialBackoff = time.Second
	maxBackoff     = 10 * time.Second
	// maxUnschedulableWait is how long a pod waits for a cluster change before it is tried
	// again anyway.
	maxUnschedulableWait = 5 * time.Minute
	// flushInterval is how often backed-off and long-waiting pods are moved back.
	flushInterval = 200 * time.Millisecond
)

// queuedPod is a pending pod in the queue.
type queuedPod struct {
	info *PodInfo
	// timestamp orders pods of equal priority: when the pod (re)entered the active queue.
	timestamp time.Time
	// attempts counts scheduling attempts; it sets the back-off.
	attempts int
	// backoffUntil is when a failed pod may be tried again.
	backoffUntil time.Time
	// unschedulableSince is when the pod was parked waiting for a cluster change.
	unschedulableSince time.Time
	// cycle is the scheduling cycle that popped the pod.
	cycle int64
	index int // in its heap
	where queueLocation
}

type queueLocation int

const (
	inActive queueLocation = iota + 1
	inBackoff
	inUnschedulable
	inFlight
)

// Queue is the scheduling queue, shaped like Kubernetes': an active queue ordered by
// priority then arrival, a back-off queue for pods that just failed, and a set of
// unschedulable pods that wait for a cluster change (a node added or changed, a pod deleted)
// that could make them fit.
type Queue struct {
	mu     sync.Mutex
	wake   chan struct{}
	now    func() time.Time
	pods   map[string]*queuedPod
	active podHeap
	// backoff is ordered by backoffUntil.
	backoff       podHeap
	unschedulable map[string]*queuedPod

	// schedulingCycle counts pops; moveRequestCycle is the cycle of the last cluster change.
	// A pod that fails in a cycle that started before a change goes to back-off instead of
	// waiting: the change may be the one that lets it fit.
	schedulingCycle  int64
	moveRequestCycle int64
}

// NewQueue returns an empty queue; now is the clock (nil: time.Now).
func NewQueue(now func() time.Time) *Queue {
	if now == nil {
		now = time.Now
	}
	q := &Queue{wake: make(chan struct{}, 1), now: now, pods: map[string]*queuedPod{},
		unschedulable: map[string]*queuedPod{}}
	q.active.less = func(a, b *queuedPod) bool {
		if a.info.Priority != b.info.Priority {
			return a.info.Priority > b.info.Priority
		}
		return a.timestamp.Before(b.timestamp)
	}
	q.backoff.less = func(a, b *queuedPod) bool { return a.backoffUntil.Before(b.backoffUntil) }
	return q
}

// Add queues a new pending pod, or updates a queued one. An update that changes what the pod
// asks for (not just its status) moves a waiting pod back to the active queue.
func (q *Queue) Add(pi *PodInfo) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qp, ok := q.pods[pi.Key]
	if !ok {
		qp = &queuedPod{info: pi, timestamp: q.now()}
		q.pods[pi.Key] = qp
		q.pushActive(qp)
		return
	}
	changed := schedulingInputsChanged(qp.info, pi)
	qp.info = pi
	switch qp.where {
	case inActive:
		heap.Fix(&q.active, qp.index)
	case inUnschedulable, inBackoff:
		if changed {
			q.remove(qp)
			q.pushActive(qp)
		}
	}
}

// Delete drops a pod (deleted, or bound by someone else).
func (q *Queue) Delete(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qp, ok := q.pods[key]; ok {
		q.remove(qp)
		delete(q.pods, key)
	}
}

// Pop waits for the highest-priority active pod and hands it out; it is "in flight" until
// Done, Requeue or Delete. It returns nil when ctx ends.
func (q *Queue) Pop(ctx context.Context) *queuedPod {
	for {
		q.mu.Lock()
		if q.active.Len() > 0 {
			qp := heap.Pop(&q.active).(*queuedPod)
			q.schedulingCycle++
			qp.cycle = q.schedulingCycle
			qp.where = inFlight
			qp.attempts++
			q.mu.Unlock()
			return qp
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-q.wake:
		}
	}
}

// Done forgets a pod that was scheduled.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qp, ok := q.pods[key]; ok && qp.where == inFlight {
		delete(q.pods, key)
	}
}

// Requeue puts back a pod that did not get a node. An unschedulable pod waits for a cluster
// change (or goes to back-off if one happened during its cycle); a pod that failed for another
// reason (an API error) goes to back-off.
func (q *Queue) Requeue(qp *queuedPod, unschedulable bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cur, ok := q.pods[qp.info.Key]
	if !ok || cur != qp || qp.where != inFlight {
		return // deleted, or re-added, while in flight
	}
	now := q.now()
	qp.backoffUntil = now.Add(backoffFor(qp.attempts))
	if unschedulable && q.moveRequestCycle < qp.cycle {
		qp.unschedulableSince = now
		qp.where = inUnschedulable
		q.unschedulable[qp.info.Key] = qp
		return
	}
	q.pushBackoff(qp)
}

// MoveAllToActiveOrBackoff is called on cluster changes that may let waiting pods fit: each
// goes to the active queue, or to back-off if its back-off has not expired.
func (q *Queue) MoveAllToActiveOrBackoff() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.moveRequestCycle = q.schedulingCycle
	if len(q.unschedulable) == 0 {
		return
	}
	now := q.now()
	for _, qp := range q.unschedulable {
		q.remove(qp)
		if qp.backoffUntil.After(now) {
			q.pushBackoff(qp)
		} else {
			q.pushActive(qp)
		}
	}
}

// Run moves pods whose back-off has expired, and pods that waited too long for a change,
// back to the active queue, until ctx ends.
func (q *Queue) Run(ctx context.Context) {
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.flush()
		}
	}
}

func (q *Queue) flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	for q.backoff.Len() > 0 && !q.backoff.items[0].backoffUntil.After(now) {
		qp := heap.Pop(&q.backoff).(*queuedPod)
		q.pushActive(qp)
	}
	for _, qp := range q.unschedulable {
		if now.Sub(qp.unschedulableSince) >= maxUnschedulableWait {
			q.remove(qp)
			q.pushActive(qp)
		}
	}
}

// Lengths reports the sizes of the active, back-off and unschedulable queues.
func (q *Queue) Lengths() (active, backoff, unschedulable int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.active.Len(), q.backoff.Len(), len(q.unschedulable)
}

func (q *Queue) pushActive(qp *queuedPod) {
	qp.timestamp = q.now()
	qp.where = inActive
	heap.Push(&q.active, qp)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *Queue) pushBackoff(qp *queuedPod) {
	qp.where = inBackoff
	heap.Push(&q.backoff, qp)
}

// remove takes qp out of whichever queue holds it (it stays known in q.pods).
func (q *Queue) remove(qp *queuedPod) {
	switch qp.where {
	case inActive:
		heap.Remove(&q.active, qp.index)
	case inBackoff:
		heap.Remove(&q.backoff, qp.index)
	case inUnschedulable:
		delete(q.unschedulable, qp.info.Key)
	}
	qp.where = 0
}

// backoffFor doubles from initialBackoff per failed attempt, up to maxBackoff.
func backoffFor(attempts int) time.Duration {
	d := initialBackoff
	for i := 1; i < attempts && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// schedulingInputsChanged reports whether an update could change where the pod fits: its
// spec or labels (a status or resourceVersion change cannot).
func schedulingInputsChanged(old, cur *PodInfo) bool {
	return !labelsEqual(old.Labels, cur.Labels) || !specEqual(old, cur)
}

// podHeap is a heap of queued pods ordered by less.
type podHeap struct {
	items []*queuedPod
	less  func(a, b *queuedPod) bool
}

func (h *podHeap) Len() int           { return len(h.items) }
func (h *podHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *podHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.items[i].index, h.items[j].index = i, j
}
func (h *podHeap) Push(x any) {
	qp := x.(*queuedPod)
	qp.index = len(h.items)
	h.items = append(h.items, qp)
}
func (h *podHeap) Pop() any {
	n := len(h.items)
	qp := h.items[n-1]
	h.items[n-1] = nil
	h.items = h.items[:n-1]
	qp.index = -1
	return qp
}
