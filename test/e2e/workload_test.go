package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
)

// podsPerNamespace is how many pods each of namespaceWriter's namespaces holds when deleted.
const podsPerNamespace = 12

// callTimeout bounds one API call: a call to an apiserver that is being killed must fail and
// be retried, not hang.
const callTimeout = 3 * time.Second

// writeStats counts what the writers did.
type writeStats struct {
	acked     atomic.Int64 // writes the apiserver confirmed
	transient atomic.Int64 // calls that failed because the apiserver or its connection was down
}

// answered tells whether err is a real answer of the API (the object exists, is gone, was
// changed meanwhile) rather than the apiserver being unreachable. After an unanswered call the
// outcome is unknown — the write may or may not have committed — so writers read the state
// again; etcd's history, not the writers' view, is what the informer is checked against.
func answered(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)
}

func testPod(ns, name string, writer int) *corev1.Pod {
	return &corev1.Pod{
		Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"app": "crash-test", "writer": strconv.Itoa(writer)}},
		Spec: &corev1.PodSpec{Containers: []*corev1.Container{{Name: "c", Image: "busybox:1"}}},
	}
}

// podWriter churns a few pods of its own in namespace default: create, update labels and
// annotations, bind to a node (which also exercises the bus's node-scoped copies), delete
// with grace 0, create again. It runs at least minOps operations and until stop is closed.
type podWriter struct {
	id     int
	c      client.Interface
	pods   *scheme.Kind
	rng    *rand.Rand
	stats  *writeStats
	names  []string
	step   int
	failed func(format string, args ...any)
}

func (w *podWriter) run(ctx context.Context, minOps int, stop <-chan struct{}) {
	for ops := 0; ctx.Err() == nil; {
		if ops >= minOps {
			select {
			case <-stop:
				return
			default:
			}
		}
		if w.op(ctx, w.names[w.rng.IntN(len(w.names))]) {
			ops++
		}
		// Pacing: enough writes to keep the publisher busy at every kill, few enough that a
		// two-core CI machine checks them all in seconds.
		time.Sleep(time.Duration(5+w.rng.IntN(15)) * time.Millisecond)
	}
}

// op reads the pod and makes one change to it. It returns false when the apiserver did not
// answer (the caller tries again, reading the state afresh).
func (w *podWriter) op(ctx context.Context, name string) bool {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	obj, err := w.c.Get(cctx, w.pods, "default", name)
	switch {
	case apierrors.IsNotFound(err):
		_, err = w.c.Create(cctx, testPod("default", name, w.id))
	case err != nil:
	default:
		pod := obj.(*corev1.Pod)
		switch r := w.rng.IntN(10); {
		case r < 6:
			next := proto.Clone(pod).(*corev1.Pod)
			w.step++
			md := next.GetMetadata()
			if md.Labels == nil {
				md.Labels = map[string]string{}
			}
			if md.Annotations == nil {
				md.Annotations = map[string]string{}
			}
			md.Labels["step"] = strconv.Itoa(w.step)
			md.Annotations["crash-test/note"] = fmt.Sprintf("writer %d step %d", w.id, w.step)
			_, err = w.c.Update(cctx, next)
		case r < 7 && pod.GetSpec().GetNodeName() == "":
			err = w.c.Bind(cctx, "default", name, "node-"+strconv.Itoa(w.rng.IntN(3)))
		default:
			zero := int64(0)
			_, err = w.c.Delete(cctx, w.pods, "default", name, client.DeleteOptions{GracePeriodSeconds: &zero})
		}
	}
	return w.settle(ctx, err)
}

// settle counts a call's outcome and tells whether the apiserver answered.
func (w *podWriter) settle(ctx context.Context, err error) bool {
	switch {
	case err == nil:
		w.stats.acked.Add(1)
		return true
	case answered(err):
		return true
	case apierrors.IsInvalid(err):
		w.failed("writer %d: the apiserver refused a valid request: %v", w.id, err)
		return true
	}
	if ctx.Err() == nil {
		w.stats.transient.Add(1)
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// namespaceWriter creates a namespace with podsPerNamespace pods, removes the pods in one etcd
// transaction and deletes the (then empty) namespace, over and over. The transaction is one
// revision with many pod changes, which the publisher must number the same way when it
// resumes in the middle of one after a crash; many pods per namespace make it likely that a
// kill lands inside such a revision. (The API itself never deletes a namespace's content with
// it, so the writer commits the multi-object revision to etcd directly, as any multi-key
// transaction would.)
type namespaceWriter struct {
	id     int
	c      client.Interface
	etcd   *clientv3.Client
	pods   *scheme.Kind
	nsKind *scheme.Kind
	stats  *writeStats
	failed func(format string, args ...any)
	rounds int
}

func (w *namespaceWriter) run(ctx context.Context, stop <-chan struct{}) {
	for ctx.Err() == nil {
		select {
		case <-stop:
			return
		default:
		}
		ns := fmt.Sprintf("crash-ns%d-%d", w.id, w.rounds)
		w.rounds++
		w.retry(ctx, func(cctx context.Context) error {
			_, err := w.c.Create(cctx, &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: ns}})
			return err
		})
		for i := range podsPerNamespace {
			w.retry(ctx, func(cctx context.Context) error {
				_, err := w.c.Create(cctx, testPod(ns, "p"+strconv.Itoa(i), 99))
				return err
			})
		}
		w.retry(ctx, func(cctx context.Context) error {
			obj, err := w.c.Get(cctx, w.pods, ns, "p0")
			if err != nil {
				return err
			}
			next := proto.Clone(obj).(*corev1.Pod)
			next.Metadata.Labels["touched"] = "yes"
			_, err = w.c.Update(cctx, next)
			return err
		})
		w.retry(ctx, func(cctx context.Context) error {
			_, err := w.etcd.Txn(cctx).Then(clientv3.OpDelete(podPrefix+ns+"/", clientv3.WithPrefix())).Commit()
			return err
		})
		w.retry(ctx, func(cctx context.Context) error {
			_, err := w.c.Delete(cctx, w.nsKind, "", ns, client.DeleteOptions{})
			return err
		})
		time.Sleep(50 * time.Millisecond)
	}
}

// retry repeats call until the apiserver answers it.
func (w *namespaceWriter) retry(ctx context.Context, call func(context.Context) error) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err := call(cctx)
		cancel()
		switch {
		case err == nil:
			w.stats.acked.Add(1)
			return
		case answered(err):
			return
		case apierrors.IsInvalid(err):
			w.failed("namespace writer: the apiserver refused a valid request: %v", err)
			return
		}
		if ctx.Err() == nil {
			w.stats.transient.Add(1)
			time.Sleep(20 * time.Millisecond)
		}
	}
}
