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
	"strings"
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
		UpdateFunc: func(_, obj scheme.Object) { enqueue(obj) },
		DeleteFunc: enqueue,
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

	cur, exists := c.epInf.Store().GetByKey(key)
	if exists {
		ep := cur.(*corev1.Endpoints)
		if subsetsEqual(ep.GetSubsets(), subsets) && maps.Equal(ep.GetMetadata().GetLabels(), wantLabels) {
			return nil
		}
		next := proto.Clone(ep).(*corev1.Endpoints)
		next.Subsets, next.Metadata.Labels = subsets, wantLabels
		if _, err := c.cfg.Client.Update(ctx, next); err != nil {
			if apierrors.IsNotFound(err) {
				return err // deleted meanwhile: the informer will tell us, and we create it again
			}
			return fmt.Errorf("update endpoints %s: %w", key, err)
		}
		return nil
	}
	ep := &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns, Labels: wantLabels}, Subsets: subsets}
	if _, err := c.cfg.Client.Create(ctx, ep); err != nil {
		if apierrors.HasStatusCause(err, apierrors.CauseNamespaceTerminating) {
			return nil
		}
		return fmt.Errorf("create endpoints %s: %w", key, err)
	}
	return nil
}

// subsetsEqual compares subsets as the API stores them (empty and absent lists alike).
func subsetsEqual(a, b []*corev1.EndpointSubset) bool {
	return proto.Equal(&corev1.Endpoints{Subsets: a}, &corev1.Endpoints{Subsets: b})
}

// Subsets computes a service's endpoints from the pods its selector matches: one subset per
// distinct set of resolved ports, addresses sorted by IP.
func Subsets(svc *corev1.Service, pods []*corev1.Pod) []*corev1.EndpointSubset {
	type group struct {
		ports           []*corev1.EndpointPort
		ready, notReady []*corev1.EndpointAddress
	}
	groups := map[string]*group{}
	spec := svc.GetSpec()
	for _, pod := range pods {
		if !inEndpoints(pod) {
			continue
		}
		var ports []*corev1.EndpointPort
		if len(spec.GetPorts()) == 0 {
			if spec.GetClusterIp() != "None" {
				continue // only a headless service may have endpoints without ports
			}
		} else {
			for _, sp := range spec.GetPorts() {
				port, ok := findPort(pod, sp)
				if !ok {
					continue
				}
				ports = append(ports, &corev1.EndpointPort{Name: sp.GetName(), Port: port, Protocol: protocol(sp.GetProtocol()),
					AppProtocol: sp.GetAppProtocol()})
			}
			if len(ports) == 0 {
				continue
			}
		}
		sort.Slice(ports, func(i, j int) bool { return portKey(ports[i]) < portKey(ports[j]) })
		var key strings.Builder
		for _, p := range ports {
			key.WriteString(portKey(p))
			key.WriteByte(';')
		}
		g := groups[key.String()]
		if g == nil {
			g = &group{ports: ports}
			groups[key.String()] = g
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
	keys := slices.Sorted(maps.Keys(groups))
	out := make([]*corev1.EndpointSubset, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
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
	return fmt.Sprintf("%s/%d/%s", p.GetName(), p.GetPort(), p.GetProtocol())
}

func sortAddresses(a []*corev1.EndpointAddress) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].GetIp() != a[j].GetIp() {
			return a[i].GetIp() < a[j].GetIp()
		}
		return a[i].GetTargetRef().GetUid() < a[j].GetTargetRef().GetUid()
	})
}
