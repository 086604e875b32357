package endpoints_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testenv/cluster"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
	"github.com/skiff-project/skiff/services/endpoints/endpoints"
)

var (
	pods     = cluster.Kind("pods")
	services = cluster.Kind("services")
	epKind   = cluster.Kind("endpoints")
)

func startController(c *cluster.Cluster) (stop func()) {
	return c.StartProcess("endpoints", func(f *informer.Factory) (func(context.Context) error, error) {
		ec, err := endpoints.New(endpoints.Config{Client: c.Client, Informers: f, Logger: c.Log})
		if err != nil {
			return nil, err
		}
		return ec.Run, nil
	})
}

func newPod(name string, node string, ports ...*corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: &corev1.PodSpec{NodeName: node, Containers: []*corev1.Container{{Name: "web", Image: "web:1", Ports: ports}}}}
}

func port(name string, n int32) *corev1.ContainerPort {
	return &corev1.ContainerPort{Name: name, ContainerPort: n}
}

func named(s string) *metav1.IntOrString {
	return &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: s}}
}
func number(n int32) *metav1.IntOrString {
	return &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: n}}
}

func webService() *corev1.Service {
	return &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"tier": "front"}},
		Spec: &corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []*corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: number(8080)},
			{Name: "metrics", Port: 9000, TargetPort: named("metrics")},
		}}}
}

func getEndpoints(t *testing.T, c *cluster.Cluster, name string) (*corev1.Endpoints, bool) {
	t.Helper()
	obj, err := c.Client.Get(context.Background(), epKind, "default", name)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*corev1.Endpoints), true
}

// describe renders subsets as "[ready a,b | notready c | ports http:8080,...]" with pod names.
func describe(ep *corev1.Endpoints) string {
	var out []string
	for _, ss := range ep.GetSubsets() {
		var ready, notReady, ports []string
		for _, a := range ss.GetAddresses() {
			ready = append(ready, a.GetTargetRef().GetName())
		}
		for _, a := range ss.GetNotReadyAddresses() {
			notReady = append(notReady, a.GetTargetRef().GetName())
		}
		for _, p := range ss.GetPorts() {
			ports = append(ports, fmt.Sprintf("%s:%d/%s", p.GetName(), p.GetPort(), p.GetProtocol()))
		}
		out = append(out, fmt.Sprintf("[ready %s | notready %s | ports %s]", strings.Join(ready, ","), strings.Join(notReady, ","), strings.Join(ports, ",")))
	}
	return strings.Join(out, " ")
}

func waitEndpoints(t *testing.T, c *cluster.Cluster, want string) *corev1.Endpoints {
	t.Helper()
	var ep *corev1.Endpoints
	cluster.WaitFor(t, 15*time.Second, "endpoints "+want, func() (bool, string) {
		var ok bool
		ep, ok = getEndpoints(t, c, "web")
		return ok && describe(ep) == want, describe(ep)
	})
	return ep
}

func TestEndpointsFollowReadinessWithNamedPorts(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true})
	ctx := context.Background()
	for i, name := range []string{"a", "b", "c"} {
		p := newPod(name, c.Nodes[i], port("http", 8080), port("metrics", 9090))
		if name == "c" {
			p = newPod(name, c.Nodes[i], port("http", 8080)) // no metrics port: only http reaches it
		}
		if _, err := c.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// A pod without an IP yet (unbound: no kubelet reports it) is not an endpoint at all.
	if _, err := c.Client.Create(ctx, newPod("pending", "", port("metrics", 9090))); err != nil {
		t.Fatal(err)
	}
	startController(c)
	if _, err := c.Client.Create(ctx, webService()); err != nil {
		t.Fatal(err)
	}
	ep := waitEndpoints(t, c, "[ready c | notready  | ports http:8080/TCP] [ready a,b | notready  | ports http:8080/TCP,metrics:9090/TCP]")
	if ep.GetMetadata().GetLabels()["tier"] != "front" {
		t.Errorf("endpoints labels %v; want the service's", ep.GetMetadata().GetLabels())
	}
	for _, a := range ep.GetSubsets()[1].GetAddresses() {
		if a.GetIp() == "" || a.GetNodeName() == "" || a.GetTargetRef().GetKind() != "Pod" || a.GetTargetRef().GetUid() == "" {
			t.Errorf("address %v lacks its IP, node or pod reference", a)
		}
	}

	// Readiness goes and comes back.
	c.Kubelet.SetPodReady("default", "b", false)
	waitEndpoints(t, c, "[ready c | notready  | ports http:8080/TCP] [ready a | notready b | ports http:8080/TCP,metrics:9090/TCP]")
	c.Kubelet.SetPodReady("default", "b", true)
	waitEndpoints(t, c, "[ready c | notready  | ports http:8080/TCP] [ready a,b | notready  | ports http:8080/TCP,metrics:9090/TCP]")

	// A pod being deleted (its node does not confirm) leaves at once.
	c.Kubelet.StopNode(c.Nodes[0])
	if _, err := c.Client.Delete(ctx, pods, "default", "a", clientDeleteOptions()); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, c, "[ready c | notready  | ports http:8080/TCP] [ready b | notready  | ports http:8080/TCP,metrics:9090/TCP]")

	// A pod whose labels stop matching leaves; the service's selector change is followed.
	obj, _ := c.Client.Get(ctx, pods, "default", "c")
	pc := obj.(*corev1.Pod)
	pc.Metadata.Labels = map[string]string{"app": "other"}
	if _, err := c.Client.Update(ctx, pc); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, c, "[ready b | notready  | ports http:8080/TCP,metrics:9090/TCP]")

	// The service goes: so do its endpoints.
	if _, err := c.Client.Delete(ctx, services, "default", "web", clientDeleteOptions()); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "endpoints deleted", func() (bool, string) {
		_, ok := getEndpoints(t, c, "web")
		return !ok, "still there"
	})
}

func TestNoWriteWhenNothingChanged(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true})
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newPod("a", c.Nodes[0], port("http", 8080), port("metrics", 9090))); err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	c.Recorder(epKind, func(_ *informer.Store, typ string, _ scheme.Object) {
		if typ != "DELETED" {
			writes.Add(1)
		}
	})
	startController(c)
	if _, err := c.Client.Create(ctx, webService()); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, c, "[ready a | notready  | ports http:8080/TCP,metrics:9090/TCP]")
	time.Sleep(300 * time.Millisecond)
	before := writes.Load()
	requestsBefore := c.APIRequests("endpoints", "update") + c.APIRequests("endpoints", "create")

	// Changes that do not touch the endpoints: a pod annotation, the service's annotations,
	// a second pod that the selector does not match.
	obj, _ := c.Client.Get(ctx, pods, "default", "a")
	p := obj.(*corev1.Pod)
	p.Metadata.Annotations = map[string]string{"touched": "yes"}
	if _, err := c.Client.Update(ctx, p); err != nil {
		t.Fatal(err)
	}
	obj, _ = c.Client.Get(ctx, services, "default", "web")
	svc := obj.(*corev1.Service)
	svc.Metadata.Annotations = map[string]string{"touched": "yes"}
	if _, err := c.Client.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	other := newPod("other", c.Nodes[1], port("http", 8080))
	other.Metadata.Labels = map[string]string{"app": "other"}
	if _, err := c.Client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := c.APIRequests("endpoints", "update") + c.APIRequests("endpoints", "create") - requestsBefore; n != 0 {
		t.Errorf("%v endpoints writes sent for changes that do not affect them; want none", n)
	}
	// Then a change that does: the endpoints are written once more, and only then.
	if _, err := c.Client.Create(ctx, newPod("b", c.Nodes[1], port("http", 8080), port("metrics", 9090))); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, c, "[ready a,b | notready  | ports http:8080/TCP,metrics:9090/TCP]")
	time.Sleep(300 * time.Millisecond)
	// b appears not ready (no IP yet? it has one at once) then ready: at most two writes.
	if got := writes.Load() - before; got < 1 || got > 2 {
		t.Errorf("%d endpoints writes for one new pod (and none for the unrelated changes); want 1 or 2", got)
	}
}

func TestHeadlessServiceWithoutPortsListsAddresses(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true})
	ctx := context.Background()
	p := newPod("a", c.Nodes[0])
	p.Spec.Hostname, p.Spec.Subdomain = "alpha", "web"
	if _, err := c.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	startController(c)
	svc := &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: &corev1.ServiceSpec{ClusterIp: "None", Selector: map[string]string{"app": "web"}}}
	if _, err := c.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	ep := waitEndpoints(t, c, "[ready a | notready  | ports ]")
	if _, ok := ep.GetMetadata().GetLabels()[endpoints.HeadlessLabel]; !ok {
		t.Errorf("labels %v; want %s", ep.GetMetadata().GetLabels(), endpoints.HeadlessLabel)
	}
	if h := ep.GetSubsets()[0].GetAddresses()[0].GetHostname(); h != "alpha" {
		t.Errorf("hostname %q; want alpha (pod hostname with the service as subdomain)", h)
	}
}

// TestEndpointsConvergeUnderRapidReadinessChanges flips readiness faster than the controller
// writes and checks that the Endpoints end up as the last flips left the pods.
func TestEndpointsConvergeUnderRapidReadinessChanges(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true})
	ctx := context.Background()
	names := []string{"a", "b", "c", "d"}
	for _, name := range names { // on one node: addresses (sorted by IP) in creation order
		if _, err := c.Client.Create(ctx, newPod(name, c.Nodes[0], port("http", 8080), port("metrics", 9090))); err != nil {
			t.Fatal(err)
		}
	}
	startController(c)
	if _, err := c.Client.Create(ctx, webService()); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, c, "[ready a,b,c,d | notready  | ports http:8080/TCP,metrics:9090/TCP]")
	ready := map[string]bool{"a": true, "b": true, "c": true, "d": true}
	for i := range 60 {
		name := names[(i*7)%len(names)]
		ready[name] = !ready[name]
		c.Kubelet.SetPodReady("default", name, ready[name])
		time.Sleep(time.Duration(i%3) * 5 * time.Millisecond)
	}
	var r, nr []string
	for _, name := range names {
		if ready[name] {
			r = append(r, name)
		} else {
			nr = append(nr, name)
		}
	}
	waitEndpoints(t, c, fmt.Sprintf("[ready %s | notready %s | ports http:8080/TCP,metrics:9090/TCP]", strings.Join(r, ","), strings.Join(nr, ",")))
}

// TestEndpointsChangedBySomeoneElseAreRestored: the controller owns the Endpoints of services
// with selectors; a hand edit or a delete is undone.
func TestEndpointsChangedBySomeoneElseAreRestored(t *testing.T) {
	c := cluster.Start(t, cluster.Options{NoScheduler: true})
	ctx := context.Background()
	if _, err := c.Client.Create(ctx, newPod("a", c.Nodes[0], port("http", 8080), port("metrics", 9090))); err != nil {
		t.Fatal(err)
	}
	startController(c)
	if _, err := c.Client.Create(ctx, webService()); err != nil {
		t.Fatal(err)
	}
	want := "[ready a | notready  | ports http:8080/TCP,metrics:9090/TCP]"
	ep := waitEndpoints(t, c, want)
	ep.Subsets = nil
	if _, err := c.Client.Update(ctx, ep); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, c, want)
	if _, err := c.Client.Delete(ctx, epKind, "default", "web", clientDeleteOptions()); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, c, want)
}
