// Package endpoints is the Endpoints controller: for every Service with a selector it keeps an
// Endpoints object of the same name listing the pods the selector matches, as Kubernetes' does
// — ready pods in addresses, pods that are not ready in notReadyAddresses, pods being deleted
// or finished left out — with each service port resolved against the pod (a numeric targetPort
// as it is, a named one from the pod's container ports), grouped into subsets of pods with the
// same ports. It writes only when the result differs from what is stored, and reacts to a pod's
// readiness changing within one reconcile: the informer tells it which services select the pod.
package endpoints

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/controller"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/pkg/labels"
	"github.com/skiff-project/skiff/pkg/workqueue"
)

// Name is the controller's name in logs and metrics.
const Name = "endpoints"

// HeadlessLabel marks the Endpoints of a headless service, as Kubernetes does.
const HeadlessLabel = "service.kubernetes.io/headless"

// Config configures the controller.
type Config struct {
	Client    client.Interface
	Informers *informer.Factory
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	// Workers reconcile different services in parallel (Kubernetes' default 5).
	Workers int
	// OnSynced, if set, is called once the caches have synced (readiness).
	OnSynced func()
}

// Controller is the Endpoints controller.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	epKind  *scheme.Kind
	svcInf  *informer.Informer
	podInf  *informer.Informer
	epInf   *informer.Informer
	queue   *workqueue.Queue[string]
	metrics *controller.Metrics
	// written holds, per key, the Endpoints this controller last wrote (as the apiserver
	// answered). A reconcile compares with it when the cache has not caught up with it yet
	// (otherwise a quick change back would look like no change against the stale cache), and
	// the informer's echo of that write does not wake the controller again.
	written sync.Map
}

// current is the newest Endpoints known for key: the cached one, or the last one written if
// the cache has not seen it yet.
func (c *Controller) current(key string) (*corev1.Endpoints, bool) {
	obj, cached := c.epInf.Store().GetByKey(key)
	v, ok := c.written.Load(key)
	if !ok {
		if !cached {
			return nil, false
		}
		return obj.(*corev1.Endpoints), true
	}
	mine := v.(*corev1.Endpoints)
	if !cached || resourceVersion(mine) > resourceVersion(obj) {
		return mine, true
	}
	return obj.(*corev1.Endpoints), true
}

func resourceVersion(obj scheme.Object) int64 {
	n, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	return n
}

// New builds the controller and registers its informer handlers; call Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Informers == nil {
		return nil, errors.New("endpoints: Config needs Client and Informers")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 5
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := cfg.Client.Scheme()
	c := &Controller{cfg: cfg, log: log.With("controller", Name), queue: workqueue.New[string](workqueue.WithName(Name)),
		metrics: controller.NewMetrics(cfg.Metrics)}
	c.epKind, _ = s.ForName("endpoints")
	svcKind, _ := s.ForName("services")
	podKind, _ := s.ForName("pods")
	c.svcInf = cfg.Informers.For(svcKind)
	c.podInf = cfg.Informers.For(podKind)
	c.epInf = cfg.Informers.For(c.epKind)
	enqueue := func(obj scheme.Object) { c.queue.Add(informer.KeyOf(obj)) }
	c.svcInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj scheme.Object) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	c.podInf.AddEventHandler(informer.HandlerFuncs{
		AddFunc: func(obj scheme.Object) { c.enqueueSelecting(obj.(*corev1.Pod)) },
		UpdateFunc: func(old, obj scheme.Object) {
			o, p := old.(*corev1.Pod), obj.(*corev1.Pod)
			if !endpointsChanged(o, p) {
				return
			}
			c.enqueueSelecting(p)
			if !maps.Equal(o.GetMetadata().GetLabels(), p.GetMetadata().GetLabels()) {
				c.enqueueSelecting(o)
			}
		},
		DeleteFunc: func(obj scheme.Object) { c.enqueueSelecting(obj.(*corev1.Pod)) },
	})
	// Someone else changing or deleting an Endpoints we manage gets it rewritten.
	c.epInf.AddEventHandler(informer.HandlerFuncs{
		UpdateFunc: func(_, obj scheme.Object) {
			if v, ok := c.written.Load(informer.KeyOf(obj)); ok && resourceVersion(v.(*corev1.Endpoints)) == resourceVersion(obj) {
				return // the echo of our own write, already compared with
			}
			enqueue(obj)
		},
		DeleteFunc: func(obj scheme.Object) {
			c.written.Delete(informer.KeyOf(obj))
			enqueue(obj)
		},
	})
	return c, nil
}

// Run reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	c.cfg.Informers.Start(ctx)
	if !informer.WaitForCacheSync(ctx, c.svcInf, c.podInf, c.epInf) {
		return ctx.Err()
	}
	c.log.Info("controller started", "services", c.svcInf.Store().Len(), "pods", c.podInf.Store().Len())
	if c.cfg.OnSynced != nil {
		c.cfg.OnSynced()
	}
	workqueue.Run(ctx, c.queue, c.cfg.Workers, func(ctx context.Context, key string) error {
		start := time.Now()
		err := c.sync(ctx, key)
		c.metrics.Observe(Name, start, err)
		if err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
			c.log.Warn("reconcile failed; will retry", "service", key, "error", err)
		}
		return err
	})
	return nil
}

// endpointsChanged reports whether a pod update changes anything an Endpoints shows.
func endpointsChanged(old, cur *corev1.Pod) bool {
	if old.GetMetadata().GetResourceVersion() == cur.GetMetadata().GetResourceVersion() {
		return false
	}
	om, cm := old.GetMetadata(), cur.GetMetadata()
	return !maps.Equal(om.GetLabels(), cm.GetLabels()) ||
		(om.GetDeletionTimestamp() == "") != (cm.GetDeletionTimestamp() == "") ||
		controller.IsPodReady(old) != controller.IsPodReady(cur) ||
		controller.IsPodTerminal(old) != controller.IsPodTerminal(cur) ||
		old.GetStatus().GetPodIp() != cur.GetStatus().GetPodIp() ||
		old.GetSpec().GetNodeName() != cur.GetSpec().GetNodeName() ||
		old.GetSpec().GetHostname() != cur.GetSpec().GetHostname() ||
		old.GetSpec().GetSubdomain() != cur.GetSpec().GetSubdomain() ||
		!proto.Equal(&corev1.PodSpec{Containers: old.GetSpec().GetContainers()}, &corev1.PodSpec{Containers: cur.GetSpec().GetContainers()})
}

// enqueueSelecting queues the services in the pod's namespace whose selector matches it.
func (c *Controller) enqueueSelecting(pod *corev1.Pod) {
	objs, _ := c.svcInf.Store().ByIndex(informer.NamespaceIndex, pod.GetMetadata().GetNamespace())
	for _, obj := range objs {
		sel := obj.(*corev1.Service).GetSpec().GetSelector()
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(pod.GetMetadata().GetLabels()) {
			c.queue.Add(informer.KeyOf(obj))
		}
	}
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	obj, ok := c.svcInf.Store().GetByKey(key)
	if !ok {
		// The service is gone: so is its Endpoints.
		ep, exists := c.epInf.Store().GetByKey(key)
		if !exists {
			return nil
		}
		c.written.Delete(key)
		_, err := c.cfg.Client.Delete(ctx, c.epKind, ns, name, client.DeleteOptions{UID: ep.GetMetadata().GetUid()})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete endpoints: %w", err)
		}
		return nil
	}
	svc := obj.(*corev1.Service)
	if len(svc.GetSpec().GetSelector()) == 0 || svc.GetMetadata().GetDeletionTimestamp() != "" {
		return nil // endpoints of a service without selector are the user's
	}
	sel := labels.SelectorFromSet(svc.GetSpec().GetSelector())
	all, _ := c.podInf.Store().ByIndex(informer.NamespaceIndex, ns)
	var selected []*corev1.Pod
	for _, p := range all {
		if sel.Matches(p.GetMetadata().GetLabels()) {
			selected = append(selected, p.(*corev1.Pod))
		}
	}
	subsets := Subsets(svc, selected)
	wantLabels := maps.Clone(svc.GetMetadata().GetLabels())
	if svc.GetSpec().GetClusterIp() == "None" {
		if wantLabels == nil {
			wantLabels = map[string]string{}
		}
		wantLabels[HeadlessLabel] = ""
	}

	ep, exists := c.current(key)
	if exists {
		if subsetsEqual(ep.GetSubsets(), subsets) && maps.Equal(ep.GetMetadata().GetLabels(), wantLabels) {
			return nil
		}
		// Only metadata is carried over: copying the old subsets would cost as much as
		// computing the new ones.
		md := proto.Clone(ep.GetMetadata()).(*metav1.ObjectMeta)
		md.Labels = wantLabels
		next := &corev1.Endpoints{ApiVersion: ep.GetApiVersion(), Kind: ep.GetKind(), Metadata: md, Subsets: subsets}
		res, err := c.cfg.Client.Update(ctx, next)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return err // deleted meanwhile: the informer will tell us, and we create it again
			}
			return fmt.Errorf("update endpoints %s: %w", key, err)
		}
		c.written.Store(key, res)
		return nil
	}
	fresh := &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns, Labels: wantLabels}, Subsets: subsets}
	res, err := c.cfg.Client.Create(ctx, fresh)
	if err != nil {
		if apierrors.HasStatusCause(err, apierrors.CauseNamespaceTerminating) {
			return nil
		}
		return fmt.Errorf("create endpoints %s: %w", key, err)
	}
	c.written.Store(key, res)
	return nil
}

// subsetsEqual compares subsets field by field (proto.Equal's reflection costs milliseconds on
// a thousand addresses, and this runs on every reconcile).
func subsetsEqual(a, b []*corev1.EndpointSubset) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !addressesEqual(a[i].GetAddresses(), b[i].GetAddresses()) ||
			!addressesEqual(a[i].GetNotReadyAddresses(), b[i].GetNotReadyAddresses()) ||
			!slices.EqualFunc(a[i].GetPorts(), b[i].GetPorts(), func(x, y *corev1.EndpointPort) bool { return proto.Equal(x, y) }) {
			return false
		}
	}
	return true
}

func addressesEqual(a, b []*corev1.EndpointAddress) bool {
	return slices.EqualFunc(a, b, func(x, y *corev1.EndpointAddress) bool {
		if x.GetIp() != y.GetIp() || x.GetHostname() != y.GetHostname() || x.GetNodeName() != y.GetNodeName() {
			return false
		}
		rx, ry := x.GetTargetRef(), y.GetTargetRef()
		return (rx == nil) == (ry == nil) && rx.GetUid() == ry.GetUid() && rx.GetName() == ry.GetName() &&
			rx.GetNamespace() == ry.GetNamespace() && rx.GetKind() == ry.GetKind() && rx.GetApiVersion() == ry.GetApiVersion() &&
			rx.GetResourceVersion() == ry.GetResourceVersion() && rx.GetFieldPath() == ry.GetFieldPath()
	})
}

// Subsets computes a service's endpoints from the pods its selector matches: one subset per
// distinct set of resolved ports (ordered by those ports), addresses sorted by IP.
func Subsets(svc *corev1.Service, pods []*corev1.Pod) []*corev1.EndpointSubset {
	type group struct {
		ports           []*corev1.EndpointPort
		order           string
		ready, notReady []*corev1.EndpointAddress
	}
	spec := svc.GetSpec()
	svcPorts := spec.GetPorts()
	headless := spec.GetClusterIp() == "None"
	groups := map[string]*group{}
	resolved := make([]int32, len(svcPorts))
	var key []byte
	for _, pod := range pods {
		if !inEndpoints(pod) {
			continue
		}
		// The pod's port set, as a key: the resolved port of each service port (0: none).
		key = key[:0]
		found := 0
		for i, sp := range svcPorts {
			port, ok := findPort(pod, sp)
			if !ok {
				port = 0
			} else {
				found++
			}
			resolved[i] = port
			key = strconv.AppendInt(key, int64(port), 10)
			key = append(key, ',')
		}
		if (len(svcPorts) > 0 && found == 0) || (len(svcPorts) == 0 && !headless) {
			continue // only a headless service may have endpoints without ports
		}
		g := groups[string(key)]
		if g == nil {
			g = &group{}
			for i, sp := range svcPorts {
				if resolved[i] != 0 {
					g.ports = append(g.ports, &corev1.EndpointPort{Name: sp.GetName(), Port: resolved[i],
						Protocol: protocol(sp.GetProtocol()), AppProtocol: sp.GetAppProtocol()})
				}
			}
			sort.Slice(g.ports, func(i, j int) bool { return portKey(g.ports[i]) < portKey(g.ports[j]) })
			var order strings.Builder
			for _, p := range g.ports {
				order.WriteString(portKey(p))
				order.WriteByte(';')
			}
			g.order = order.String()
			groups[string(key)] = g
		}
		md := pod.GetMetadata()
		addr := &corev1.EndpointAddress{Ip: pod.GetStatus().GetPodIp(), NodeName: pod.GetSpec().GetNodeName(),
			TargetRef: &metav1.ObjectReference{Kind: "Pod", Namespace: md.GetNamespace(), Name: md.GetName(), Uid: md.GetUid()}}
		if h := pod.GetSpec().GetHostname(); h != "" && pod.GetSpec().GetSubdomain() == svc.GetMetadata().GetName() &&
			md.GetNamespace() == svc.GetMetadata().GetNamespace() {
			addr.Hostname = h
		}
		if controller.IsPodReady(pod) {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	sorted := slices.SortedFunc(maps.Values(groups), func(a, b *group) int { return strings.Compare(a.order, b.order) })
	out := make([]*corev1.EndpointSubset, 0, len(sorted))
	for _, g := range sorted {
		sortAddresses(g.ready)
		sortAddresses(g.notReady)
		out = append(out, &corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	return out
}

// inEndpoints: a pod with an IP that has not finished and is not being deleted.
func inEndpoints(pod *corev1.Pod) bool {
	return !controller.IsPodTerminal(pod) && pod.GetStatus().GetPodIp() != "" && pod.GetMetadata().GetDeletionTimestamp() == ""
}

// findPort resolves a service port's targetPort on a pod: a number as it is, a name through
// the pod's container ports of the same protocol.
func findPort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, bool) {
	switch v := sp.GetTargetPort().GetValue().(type) {
	case *metav1.IntOrString_IntVal:
		return v.IntVal, v.IntVal > 0
	case *metav1.IntOrString_StrVal:
		for _, c := range pod.GetSpec().GetContainers() {
			for _, p := range c.GetPorts() {
				if p.GetName() == v.StrVal && protocol(p.GetProtocol()) == protocol(sp.GetProtocol()) {
					return p.GetContainerPort(), true
				}
			}
		}
		return 0, false
	}
	return sp.GetPort(), sp.GetPort() > 0
}

func protocol(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

func portKey(p *corev1.EndpointPort) string {
	return p.GetName() + "/" + strconv.Itoa(int(p.GetPort())) + "/" + p.GetProtocol()
}

func sortAddresses(a []*corev1.EndpointAddress) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].GetIp() != a[j].GetIp() {
			return a[i].GetIp() < a[j].GetIp()
		}
		return a[i].GetTargetRef().GetUid() < a[j].GetTargetRef().GetUid()
	})
}
