package dns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	coordv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/leaderelection"
)

// The cluster DNS is reached at the cluster IP of kube-system/kube-dns, as Kubernetes users
// expect. Skiff's DNS servers are processes, not pods, so no selector picks them: the Service
// has none and its Endpoints are written by the servers themselves, as Kubernetes'
// apiservers write the `kubernetes` Service's (the "lease" reconciler). Each server holds a
// Lease naming its address and renews it; each writes the Endpoints from the Leases that are
// fresh, so a server that dies leaves the Endpoints within LeaseDuration and a stopping one
// takes itself out at once.

// Names and defaults of the DNS Service.
const (
	ServiceNamespace = "kube-system"
	ServiceName      = "kube-dns"
	// endpointLabel marks the Leases that make the Service's Endpoints.
	endpointLabel = "skiff.io/endpoints-of"
	// endpointAnnotation is the address a Lease's holder serves on.
	endpointAnnotation = "skiff.io/endpoint"
)

// RegistrationConfig configures a Registration.
type RegistrationConfig struct {
	Client client.Interface
	// ClusterIP is the Service's address (the service range's tenth, 10.96.0.10, by
	// default: what pods' resolv.conf names).
	ClusterIP netip.Addr
	// Endpoint is where this server answers, reachable from the node's pods and processes
	// (not a loopback address: the proxy sends pods' queries there from their own network
	// namespace).
	Endpoint netip.AddrPort
	// Identity names this server (unique among servers).
	Identity string
	// LeaseDuration is how long a server's address stays without renewal (default 30s);
	// it is renewed every third of it.
	LeaseDuration time.Duration
	Logger        *slog.Logger
}

// Registration keeps this server in the kube-dns Service's Endpoints.
type Registration struct {
	cfg                 RegistrationConfig
	log                 *slog.Logger
	svcKind, epKind, lk *scheme.Kind
	leaseName           string
}

// NewRegistration prepares a registration; Run keeps it.
func NewRegistration(cfg RegistrationConfig) (*Registration, error) {
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 30 * time.Second
	}
	if !cfg.Endpoint.IsValid() || cfg.Endpoint.Addr().IsLoopback() || cfg.Endpoint.Addr().IsUnspecified() {
		return nil, fmt.Errorf("DNS endpoint %s: needs an address other processes and pods reach (not loopback)", cfg.Endpoint)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Registration{cfg: cfg, log: log}
	var err error
	s := scheme.Default()
	if r.svcKind, err = s.ForMessage(&corev1.Service{}); err != nil {
		return nil, err
	}
	if r.epKind, err = s.ForMessage(&corev1.Endpoints{}); err != nil {
		return nil, err
	}
	if r.lk, err = s.ForMessage(&coordv1.Lease{}); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(cfg.Identity))
	r.leaseName = ServiceName + "-" + hex.EncodeToString(sum[:6])
	return r, nil
}

// Run makes sure the Service exists, then keeps this server's Lease and the Endpoints until
// ctx ends; then it removes this server from them.
func (r *Registration) Run(ctx context.Context) error {
	period := r.cfg.LeaseDuration / 3
	for {
		err := r.ensureService(ctx)
		if err == nil {
			err = r.renew(ctx)
		}
		if err == nil {
			err = r.reconcile(ctx)
		}
		if err != nil && ctx.Err() == nil {
			r.log.Warn("DNS registration", "error", err)
		}
		select {
		case <-ctx.Done():
			r.leave()
			return nil
		case <-time.After(period):
		}
	}
}

// ensureService creates kube-system/kube-dns if it is missing.
func (r *Registration) ensureService(ctx context.Context) error {
	svc := &corev1.Service{
		Metadata: &metav1.ObjectMeta{Name: ServiceName, Namespace: ServiceNamespace,
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}},
		Spec: &corev1.ServiceSpec{
			Type:      "ClusterIP",
			ClusterIp: r.cfg.ClusterIP.String(),
			Ports: []*corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: "UDP"},
				{Name: "dns-tcp", Port: 53, Protocol: "TCP"},
			},
		},
	}
	if _, err := r.cfg.Client.Get(ctx, r.svcKind, ServiceNamespace, ServiceName); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	if _, err := r.cfg.Client.Create(ctx, svc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service %s/%s: %w", ServiceNamespace, ServiceName, err)
	}
	r.log.Info("created the cluster DNS service", "clusterIP", r.cfg.ClusterIP.String())
	return nil
}

func now() string { return time.Now().UTC().Format(leaderelection.MicroTimeFormat) }

// renew creates or renews this server's Lease.
func (r *Registration) renew(ctx context.Context) error {
	dur := int32(r.cfg.LeaseDuration / time.Second)
	want := &coordv1.Lease{
		Metadata: &metav1.ObjectMeta{Name: r.leaseName, Namespace: ServiceNamespace,
			Labels:      map[string]string{endpointLabel: ServiceName},
			Annotations: map[string]string{endpointAnnotation: r.cfg.Endpoint.String()}},
		Spec: &coordv1.LeaseSpec{HolderIdentity: r.cfg.Identity, LeaseDurationSeconds: &dur, RenewTime: now()},
	}
	cur, err := r.cfg.Client.Get(ctx, r.lk, ServiceNamespace, r.leaseName)
	if apierrors.IsNotFound(err) {
		want.Spec.AcquireTime = want.Spec.RenewTime
		_, err = r.cfg.Client.Create(ctx, want)
		return err
	}
	if err != nil {
		return err
	}
	next := proto.Clone(cur).(*coordv1.Lease)
	next.Metadata.Labels, next.Metadata.Annotations = want.Metadata.Labels, want.Metadata.Annotations
	if next.Spec == nil {
		next.Spec = &coordv1.LeaseSpec{}
	}
	next.Spec.HolderIdentity, next.Spec.LeaseDurationSeconds, next.Spec.RenewTime = want.Spec.HolderIdentity, &dur, want.Spec.RenewTime
	_, err = r.cfg.Client.Update(ctx, next)
	return err
}

// reconcile writes the Endpoints from the fresh Leases.
func (r *Registration) reconcile(ctx context.Context) error {
	list, err := client.ListAll(ctx, r.cfg.Client, r.lk, ServiceNamespace, client.ListOptions{LabelSelector: endpointLabel + "=" + ServiceName})
	if err != nil {
		return fmt.Errorf("list DNS leases: %w", err)
	}
	var live []netip.AddrPort
	for _, obj := range list.Items {
		l := obj.(*coordv1.Lease)
		ap, err := netip.ParseAddrPort(l.GetMetadata().GetAnnotations()[endpointAnnotation])
		if err != nil || !fresh(l) {
			continue
		}
		live = append(live, ap)
	}
	return r.writeEndpoints(ctx, live)
}

func fresh(l *coordv1.Lease) bool {
	t, err := time.Parse(leaderelection.MicroTimeFormat, l.GetSpec().GetRenewTime())
	if err != nil {
		return false
	}
	return time.Since(t) < time.Duration(l.GetSpec().GetLeaseDurationSeconds())*time.Second
}

// writeEndpoints makes the Endpoints list addrs (one subset per port), writing only when
// they differ.
func (r *Registration) writeEndpoints(ctx context.Context, addrs []netip.AddrPort) error {
	slices.SortFunc(addrs, func(a, b netip.AddrPort) int { return a.Compare(b) })
	addrs = slices.Compact(addrs)
	byPort := map[uint16][]*corev1.EndpointAddress{}
	var ports []uint16
	for _, a := range addrs {
		if _, ok := byPort[a.Port()]; !ok {
			ports = append(ports, a.Port())
		}
		byPort[a.Port()] = append(byPort[a.Port()], &corev1.EndpointAddress{Ip: a.Addr().String()})
	}
	var subsets []*corev1.EndpointSubset
	for _, p := range ports {
		subsets = append(subsets, &corev1.EndpointSubset{Addresses: byPort[p], Ports: []*corev1.EndpointPort{
			{Name: "dns", Port: int32(p), Protocol: "UDP"},
			{Name: "dns-tcp", Port: int32(p), Protocol: "TCP"},
		}})
	}
	want := &corev1.Endpoints{Metadata: &metav1.ObjectMeta{Name: ServiceName, Namespace: ServiceNamespace,
		Labels: map[string]string{"k8s-app": "kube-dns"}}, Subsets: subsets}
	cur, err := r.cfg.Client.Get(ctx, r.epKind, ServiceNamespace, ServiceName)
	if apierrors.IsNotFound(err) {
		_, err = r.cfg.Client.Create(ctx, want)
		return err
	}
	if err != nil {
		return err
	}
	curEP := cur.(*corev1.Endpoints)
	if equalSubsets(curEP.GetSubsets(), subsets) {
		return nil
	}
	next := proto.Clone(curEP).(*corev1.Endpoints)
	next.Subsets = subsets
	_, err = r.cfg.Client.Update(ctx, next)
	return err
}

func equalSubsets(a, b []*corev1.EndpointSubset) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// leave deletes this server's Lease and rewrites the Endpoints without it.
func (r *Registration) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.cfg.Client.Delete(ctx, r.lk, ServiceNamespace, r.leaseName, client.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		r.log.Warn("cannot remove the DNS lease", "error", err)
		return
	}
	if err := r.reconcile(ctx); err != nil {
		r.log.Warn("cannot remove this server from the DNS endpoints", "error", err)
	}
}
