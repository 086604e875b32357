package informer

import "github.com/skiff-project/skiff/pkg/apis/scheme"

// ResourceEventHandler is told about changes to the informer's cache. All calls come from
// the informer's one goroutine, in the order the changes happened; for each object, each
// revision is delivered at most once and revisions only grow.
//
// Handlers must be quick and must not block: the next change waits for them. Controllers
// enqueue the object's key (KeyOf) into a pkg/workqueue and do the work elsewhere. The
// objects are shared with the cache: do not mutate them.
type ResourceEventHandler interface {
	// OnAdd: the object appeared (also for every object of the initial list, and for every
	// cached object when the handler is added to a running informer).
	OnAdd(obj scheme.Object)
	// OnUpdate: the object changed; oldObj is the version the handler saw last.
	OnUpdate(oldObj, newObj scheme.Object)
	// OnDelete: the object is gone. obj is its last state: from the delete event, or — when
	// a relist finds it missing — the last cached version.
	OnDelete(obj scheme.Object)
}

// HandlerFuncs adapts functions to a ResourceEventHandler; nil functions are skipped.
type HandlerFuncs struct {
	AddFunc    func(obj scheme.Object)
	UpdateFunc func(oldObj, newObj scheme.Object)
	DeleteFunc func(obj scheme.Object)
}

var _ ResourceEventHandler = HandlerFuncs{}

// OnAdd calls AddFunc if set.
func (h HandlerFuncs) OnAdd(obj scheme.Object) {
	if h.AddFunc != nil {
		h.AddFunc(obj)
	}
}

// OnUpdate calls UpdateFunc if set.
func (h HandlerFuncs) OnUpdate(oldObj, newObj scheme.Object) {
	if h.UpdateFunc != nil {
		h.UpdateFunc(oldObj, newObj)
	}
}

// OnDelete calls DeleteFunc if set.
func (h HandlerFuncs) OnDelete(obj scheme.Object) {
	if h.DeleteFunc != nil {
		h.DeleteFunc(obj)
	}
}
