package registry

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/ipalloc"
	"github.com/skiff-project/skiff/services/apiserver/storage"
	"github.com/skiff-project/skiff/services/apiserver/validation"
)

// A Service's cluster IP, as in Kubernetes: a create without spec.clusterIP gets a free
// address of the service range; one with an address gets it if it is in the range and free
// (422 at spec.clusterIP otherwise); "None" is a headless service, which holds no address;
// an ExternalName service holds none either. The address is held by a key of the allocator
// written in the transaction that stores the Service, and released in the transaction that
// removes it (or that turns it into an ExternalName service). A dry run makes every check and
// holds nothing.

// allocatedIP is the address svc holds in the range, if any.
func (r *Registry) allocatedIP(svc *corev1.Service) (netip.Addr, bool) {
	if svc == nil || svc.GetSpec().GetType() == "ExternalName" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(svc.GetSpec().GetClusterIp())
	if err != nil || !r.serviceIPs.Range().Contains(ip) {
		return netip.Addr{}, false
	}
	return ip, true
}

// wantsDynamicIP reports whether svc needs an address the allocator picks.
func wantsDynamicIP(svc *corev1.Service) bool {
	return svc.GetSpec().GetType() != "ExternalName" && svc.GetSpec().GetClusterIp() == ""
}

// writeObject stores the write w of next over cur (cur nil on a create). For a Service it
// also holds and releases cluster IPs in the same transaction, picking an address first when
// next needs one.
func (r *Registry) writeObject(ctx context.Context, k *scheme.Kind, w storage.Write, cur, next scheme.Object) error {
	svc, ok := next.(*corev1.Service)
	if !ok {
		_, err := r.store.Write(ctx, w)
		return err
	}
	old, _ := cur.(*corev1.Service)
	spec := svc.GetSpec()
	if spec.GetClusterIp() == "" && len(spec.GetClusterIps()) > 0 {
		spec.ClusterIp = spec.ClusterIps[0]
	}
	if !wantsDynamicIP(svc) {
		if err := r.checkRequestedIP(k, svc); err != nil {
			return err
		}
		setClusterIPs(svc)
		_, err := r.store.Write(ctx, r.withServiceIPs(w, old, svc))
		if ip, held := r.allocatedIP(svc); held && r.isIPTaken(err, ip) {
			return invalid(k, svc.GetMetadata().GetName(), validation.ErrorList{validation.Invalid(
				validation.NewPath("spec", "clusterIP"), ip.String(), "provided IP is already allocated")})
		}
		return err
	}
	picker := r.serviceIPs.Picker()
	for {
		ip, err := picker.Next(ctx)
		if err != nil {
			return fmt.Errorf("failed to allocate a serviceIP: %w", err)
		}
		spec.ClusterIp = ip.String()
		setClusterIPs(svc)
		_, err = r.store.Write(ctx, r.withServiceIPs(w, old, svc))
		if !r.isIPTaken(err, ip) {
			return err
		}
		// Another Service got the address first (or holds it): try another.
	}
}

// checkRequestedIP refuses a requested cluster IP outside the range.
func (r *Registry) checkRequestedIP(k *scheme.Kind, svc *corev1.Service) error {
	spec := svc.GetSpec()
	ipStr := spec.GetClusterIp()
	if spec.GetType() == "ExternalName" || ipStr == "None" || ipStr == "" {
		return nil
	}
	if ip, err := netip.ParseAddr(ipStr); err == nil && r.serviceIPs.Range().Contains(ip) {
		return nil
	}
	return invalid(k, svc.GetMetadata().GetName(), validation.ErrorList{validation.Invalid(
		validation.NewPath("spec", "clusterIP"), ipStr, fmt.Sprintf(
			"provided IP is not in the valid range. The range of valid IPs is %s", r.serviceIPs.Range()))})
}

// setClusterIPs makes spec.clusterIPs agree with spec.clusterIP, as Kubernetes fills it.
func setClusterIPs(svc *corev1.Service) {
	spec := svc.GetSpec()
	if spec == nil || spec.ClusterIp == "" {
		return
	}
	spec.ClusterIps = []string{spec.ClusterIp}
}

// withServiceIPs adds to w the allocation changes from old to next (either may be nil): the
// key of an address next holds and old did not is created (it must not exist), the key of
// one old held and next does not is deleted.
func (r *Registry) withServiceIPs(w storage.Write, old, next *corev1.Service) storage.Write {
	oldIP, oldHeld := r.allocatedIP(old)
	nextIP, nextHeld := r.allocatedIP(next)
	if oldHeld == nextHeld && oldIP == nextIP {
		return w
	}
	w.Conditions = append([]storage.Condition(nil), w.Conditions...)
	w.Sides = append([]storage.Side(nil), w.Sides...)
	if oldHeld {
		w.Sides = append(w.Sides, storage.Side{Key: r.serviceIPs.Key(oldIP), Delete: true})
	}
	if nextHeld {
		md := next.GetMetadata()
		w.Conditions = append(w.Conditions, storage.KeyAbsent(r.serviceIPs.Key(nextIP)))
		w.Sides = append(w.Sides, storage.Side{Key: r.serviceIPs.Key(nextIP), Value: ipalloc.Owner(md.GetNamespace(), md.GetName())})
	}
	return w
}

// isIPTaken reports whether err is a write refused because ip's allocation key exists.
func (r *Registry) isIPTaken(err error, ip netip.Addr) bool {
	var cond *storage.ConditionError
	return errors.As(err, &cond) && !cond.Condition.Exists && cond.Condition.Key == r.serviceIPs.Key(ip)
}

// ServiceIPs is the allocator of Services' cluster IPs.
func (r *Registry) ServiceIPs() *ipalloc.Allocator { return r.serviceIPs }

// Ports of the `kubernetes` Service. Kubernetes serves its API there on 443 (https); Skiff's
// REST is plain HTTP and its gRPC API has its own port, so the Service has one port of each.
const (
	APIServerServiceHTTPPort = 80
	APIServerServiceGRPCPort = 9090
)

// EnsureAPIServerService creates default/kubernetes, the Service clients in pods reach the
// API through, with the first address of the service range, as Kubernetes' apiserver does at
// start. It has no selector: its Endpoints are the apiservers' own addresses. An existing one
// is left as it is.
func (r *Registry) EnsureAPIServerService(ctx context.Context) error {
	k, err := r.scheme.ForMessage(&corev1.Service{})
	if err != nil {
		return err
	}
	svc := &corev1.Service{
		Metadata: &metav1.ObjectMeta{Name: "kubernetes", Namespace: "default",
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: &corev1.ServiceSpec{
			Type:      "ClusterIP",
			ClusterIp: r.serviceIPs.Range().APIServerIP().String(),
			Ports: []*corev1.ServicePort{
				{Name: "http", Port: APIServerServiceHTTPPort, Protocol: "TCP"},
				{Name: "grpc", Port: APIServerServiceGRPCPort, Protocol: "TCP"},
			},
		},
	}
	_, err = r.Create(ctx, k, "default", svc, WriteOptions{})
	switch {
	case err == nil || apierrors.IsAlreadyExists(err):
		return nil
	case apierrors.IsInvalid(err):
		// Its address is held by another Service (the range changed under a running
		// cluster): the API still serves, without the Service.
		r.log.Warn("cannot create the kubernetes Service", "error", err)
		return nil
	}
	return fmt.Errorf("ensure service default/kubernetes: %w", err)
}
