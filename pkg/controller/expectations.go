package controller

import (
	"sync"
	"time"
)

// ExpectationsTimeout bounds how long a controller waits for changes it made to show up in
// its cache before it acts again anyway (Kubernetes waits five minutes).
const ExpectationsTimeout = 5 * time.Minute

// Expectations remember, per controller key, the creations and deletions a controller has
// asked for and not yet seen through its informers. While some are outstanding the
// controller must not compute a new diff: its cache lags its own writes, and acting on it
// would create or delete twice (Kubernetes' UIDTrackingControllerExpectations). Creations are
// counted; deletions are tracked by pod key, so that the update marking a pod deleted and the
// final delete event count once.
type Expectations struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*expectation
}

type expectation struct {
	adds int
	dels map[string]struct{}
	at   time.Time
}

// NewExpectations returns empty expectations.
func NewExpectations() *Expectations {
	return &Expectations{now: time.Now, m: map[string]*expectation{}}
}

// Satisfied reports whether the controller of key may act: nothing is outstanding, or what
// is has waited longer than ExpectationsTimeout.
func (e *Expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	return (x.adds <= 0 && len(x.dels) == 0) || e.now().Sub(x.at) > ExpectationsTimeout
}

// ExpectCreations records n creations about to be made, replacing what was outstanding.
func (e *Expectations) ExpectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, at: e.now()}
}

// ExpectDeletions records deletions of the objects with these keys about to be made,
// replacing what was outstanding.
func (e *Expectations) ExpectDeletions(key string, objKeys []string) {
	dels := make(map[string]struct{}, len(objKeys))
	for _, k := range objKeys {
		dels[k] = struct{}{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{dels: dels, at: e.now()}
}

// CreationObserved counts one expected creation as seen (or as never to be seen: a create
// that failed).
func (e *Expectations) CreationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

// DeletionObserved marks the deletion of objKey as seen; repeats are harmless.
func (e *Expectations) DeletionObserved(key, objKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.dels, objKey)
	}
}

// Delete forgets key (its controller object is gone).
func (e *Expectations) Delete(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}

// Pending reports the outstanding creations and deletions of key (for tests and logs).
func (e *Expectations) Pending(key string) (adds, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		return x.adds, len(x.dels)
	}
	return 0, 0
}
