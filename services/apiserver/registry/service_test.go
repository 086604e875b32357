package registry_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/services/apiserver/ipalloc"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// serviceRegistry is a registry on etcd with the given service range (and the default
// namespace).
func serviceRegistry(t *testing.T, etcd *clientv3.Client, cidr string) *registry.Registry {
	t.Helper()
	rng, err := ipalloc.ParseRange(cidr)
	if err != nil {
		t.Fatal(err)
	}
	r := registry.New(storage.New(etcd), scheme.Default(), registry.Options{ServiceIPRange: rng})
	if err := r.EnsureNamespace(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	return r
}

func servicesKind(t *testing.T) *scheme.Kind {
	t.Helper()
	k, err := scheme.Default().ForName("services")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newService(name, clusterIP string) *corev1.Service {
	return &corev1.Service{Metadata: &metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: &corev1.ServiceSpec{ClusterIp: clusterIP, Selector: map[string]string{"app": name},
			Ports: []*corev1.ServicePort{{Port: 80}}}}
}

// allocations reads the allocation keys: address -> owner.
func allocations(t *testing.T, etcd *clientv3.Client) map[string]string {
	t.Helper()
	p := ipalloc.KeyPrefix(registry.DefaultPrefix)
	resp, err := etcd.Get(context.Background(), p, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)[len(p):]] = string(kv.Value)
	}
	return out
}

// causeField is the field of a 422's first cause.
func causeField(err error) string {
	if err == nil {
		return ""
	}
	st := apierrors.FromError(err).Status
	if c := st.GetDetails().GetCauses(); len(c) > 0 {
		return c[0].GetField()
	}
	return ""
}

func TestClusterIPAllocation(t *testing.T) {
	_, etcd := testenv.Etcd(t)
	r := serviceRegistry(t, etcd, ipalloc.DefaultRange)
	k := servicesKind(t)
	ctx := context.Background()
	rng, _ := ipalloc.ParseRange(ipalloc.DefaultRange)

	// Dynamic: an address of the range's upper band, recorded in etcd as held by the Service.
	got, err := r.Create(ctx, k, "default", newService("web", ""), registry.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := got.(*corev1.Service).Spec
	ip, err := netip.ParseAddr(spec.ClusterIp)
	if err != nil || !rng.Contains(ip) {
		t.Fatalf("allocated clusterIP %q; want an address of %s", spec.ClusterIp, rng)
	}
	if len(spec.ClusterIps) != 1 || spec.ClusterIps[0] != spec.ClusterIp {
		t.Errorf("clusterIPs %v; want [%s]", spec.ClusterIps, spec.ClusterIp)
	}
	if low, _ := rng.Nth(255); ip.Less(low) {
		t.Errorf("dynamic address %s is in the static band (below %s)", ip, low)
	}
	if owner := allocations(t, etcd)[spec.ClusterIp]; owner != "default/web" {
		t.Errorf("allocation key of %s holds %q; want default/web", spec.ClusterIp, owner)
	}
	stored, _ := r.Get(ctx, k, "default", "web", registry.GetOptions{})
	if stored.(*corev1.Service).Spec.ClusterIp != spec.ClusterIp {
		t.Errorf("stored clusterIP %q; answered %q", stored.(*corev1.Service).Spec.ClusterIp, spec.ClusterIp)
	}

	// Requested and free: honoured.
	if got, err := r.Create(ctx, k, "default", newService("dns", "10.96.0.10"), registry.WriteOptions{}); err != nil ||
		got.(*corev1.Service).Spec.ClusterIp != "10.96.0.10" {
		t.Fatalf("requested free 10.96.0.10: %v", err)
	}
	// Requested and held: 422 at spec.clusterIP, nothing stored.
	_, err = r.Create(ctx, k, "default", newService("dns2", "10.96.0.10"), registry.WriteOptions{})
	if !apierrors.IsInvalid(err) || causeField(err) != "spec.clusterIP" {
		t.Errorf("requested held address: %v (field %q); want 422 at spec.clusterIP", err, causeField(err))
	}
	// The address of another Service is refused too.
	_, err = r.Create(ctx, k, "default", newService("dns3", spec.ClusterIp), registry.WriteOptions{})
	if !apierrors.IsInvalid(err) || causeField(err) != "spec.clusterIP" {
		t.Errorf("requested address of default/web: %v; want 422 at spec.clusterIP", err)
	}
	if _, err := r.Get(ctx, k, "default", "dns2", registry.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused service was stored: %v", err)
	}
	// Outside the range, or its network address: 422.
	for _, bad := range []string{"192.168.0.10", "10.96.0.0", "10.111.255.255"} {
		_, err = r.Create(ctx, k, "default", newService("out", bad), registry.WriteOptions{})
		if !apierrors.IsInvalid(err) || causeField(err) != "spec.clusterIP" {
			t.Errorf("requested %s outside the range: %v; want 422 at spec.clusterIP", bad, err)
		}
	}

	// Headless and ExternalName services hold no address.
	if got, err := r.Create(ctx, k, "default", newService("headless", "None"), registry.WriteOptions{}); err != nil ||
		got.(*corev1.Service).Spec.ClusterIp != "None" {
		t.Fatalf("headless: %v %v", got, err)
	}
	ext := &corev1.Service{Metadata: &metav1.ObjectMeta{Name: "ext", Namespace: "default"},
		Spec: &corev1.ServiceSpec{Type: "ExternalName", ExternalName: "db.example.com"}}
	if got, err := r.Create(ctx, k, "default", ext, registry.WriteOptions{}); err != nil || got.(*corev1.Service).Spec.ClusterIp != "" {
		t.Fatalf("externalName: %v %v", got, err)
	}
	if a := allocations(t, etcd); len(a) != 2 {
		t.Errorf("allocations %v; want 2 (web and dns)", a)
	}

	// Delete releases: the key goes and the address can be asked for again.
	if _, err := r.Delete(ctx, k, "default", "dns", registry.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, held := allocations(t, etcd)["10.96.0.10"]; held {
		t.Errorf("10.96.0.10 still allocated after its Service was deleted")
	}
	if _, err := r.Create(ctx, k, "default", newService("dns2", "10.96.0.10"), registry.WriteOptions{}); err != nil {
		t.Errorf("released address requested again: %v", err)
	}

	// An update leaving clusterIP out keeps it; switching to ExternalName releases it;
	// switching back allocates a new one.
	cur, _ := r.Get(ctx, k, "default", "web", registry.GetOptions{})
	upd := cur.(*corev1.Service)
	upd.Spec.ClusterIp, upd.Spec.ClusterIps = "", nil
	upd.Spec.Selector = map[string]string{"app": "web2"}
	got, err = r.Update(ctx, k, "default", "web", upd, registry.WriteOptions{})
	if err != nil || got.(*corev1.Service).Spec.ClusterIp != spec.ClusterIp {
		t.Fatalf("update without clusterIP: %v; kept %q, want %q", err, got.(*corev1.Service).GetSpec().GetClusterIp(), spec.ClusterIp)
	}
	upd = got.(*corev1.Service)
	upd.Spec.Type, upd.Spec.ClusterIp, upd.Spec.ClusterIps, upd.Spec.ExternalName = "ExternalName", "", nil, "web.example.com"
	upd.Spec.Ports = nil
	if got, err = r.Update(ctx, k, "default", "web", upd, registry.WriteOptions{}); err != nil {
		t.Fatalf("to ExternalName: %v", err)
	}
	if _, held := allocations(t, etcd)[spec.ClusterIp]; held {
		t.Errorf("%s still allocated after its Service became ExternalName", spec.ClusterIp)
	}
	upd = got.(*corev1.Service)
	upd.Spec.Type, upd.Spec.ExternalName = "ClusterIP", ""
	upd.Spec.Ports = []*corev1.ServicePort{{Port: 80}}
	got, err = r.Update(ctx, k, "default", "web", upd, registry.WriteOptions{})
	if err != nil {
		t.Fatalf("back to ClusterIP: %v", err)
	}
	if ip := got.(*corev1.Service).Spec.ClusterIp; allocations(t, etcd)[ip] != "default/web" {
		t.Errorf("back to ClusterIP got %q, allocations %v", ip, allocations(t, etcd))
	}
}

// A dry run checks everything and holds nothing: the answer has an address, etcd has no
// key for it and its revision does not move; a dry-run delete keeps the address held.
func TestClusterIPDryRun(t *testing.T) {
	_, etcd := testenv.Etcd(t)
	r := serviceRegistry(t, etcd, ipalloc.DefaultRange)
	k := servicesKind(t)
	ctx := context.Background()
	before, _ := etcd.Get(ctx, "x")
	got, err := r.Create(ctx, k, "default", newService("web", ""), registry.WriteOptions{DryRun: true})
	if err != nil || got.(*corev1.Service).Spec.ClusterIp == "" {
		t.Fatalf("dry-run create: %v %v; want an address in the answer", got, err)
	}
	after, _ := etcd.Get(ctx, "x")
	if a := allocations(t, etcd); len(a) != 0 || after.Header.Revision != before.Header.Revision {
		t.Errorf("dry run allocated %v (revision %d -> %d)", a, before.Header.Revision, after.Header.Revision)
	}
	// A dry run requesting a held address is refused as the real create would be.
	if _, err := r.Create(ctx, k, "default", newService("a", "10.96.0.20"), registry.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = r.Create(ctx, k, "default", newService("b", "10.96.0.20"), registry.WriteOptions{DryRun: true})
	if !apierrors.IsInvalid(err) || causeField(err) != "spec.clusterIP" {
		t.Errorf("dry run requesting a held address: %v; want 422 at spec.clusterIP", err)
	}
	if _, err := r.Delete(ctx, k, "default", "a", registry.DeleteOptions{DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if allocations(t, etcd)["10.96.0.20"] != "default/a" {
		t.Errorf("dry-run delete released the address: %v", allocations(t, etcd))
	}
}

// Two apiservers' registries on one etcd fill a small range concurrently: every address goes
// to one Service only, the range then answers full, and a released address is handed out
// again.
func TestClusterIPTwoRegistriesOneEtcd(t *testing.T) {
	_, etcd := testenv.Etcd(t)
	const cidr = "10.0.0.0/27" // 30 addresses
	regs := []*registry.Registry{serviceRegistry(t, etcd, cidr), serviceRegistry(t, etcd, cidr)}
	k := servicesKind(t)
	ctx := context.Background()

	var wg sync.WaitGroup
	var mu sync.Mutex
	owners := map[string]string{}
	var errs []error
	for i := range 30 {
		wg.Go(func() {
			name := fmt.Sprintf("svc-%d", i)
			got, err := regs[i%2].Create(ctx, k, "default", newService(name, ""), registry.WriteOptions{})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ip := got.(*corev1.Service).Spec.ClusterIp
			if prev, dup := owners[ip]; dup {
				t.Errorf("%s handed out twice: %s and %s", ip, prev, name)
			}
			owners[ip] = name
		})
	}
	wg.Wait()
	if len(errs) > 0 || len(owners) != 30 {
		t.Fatalf("30 creates into 30 addresses: %d addresses, errors %v", len(owners), errs)
	}
	if a := allocations(t, etcd); len(a) != 30 {
		t.Errorf("%d allocation keys; want 30", len(a))
	}
	_, err := regs[0].Create(ctx, k, "default", newService("one-too-many", ""), registry.WriteOptions{})
	if err == nil || apierrors.FromError(err).Status.GetCode() != 500 {
		t.Errorf("create in a full range: %v; want 500 (range is full)", err)
	}
	var freed string
	for ip, name := range owners {
		freed = ip
		if _, err := regs[1].Delete(ctx, k, "default", name, registry.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		break
	}
	got, err := regs[0].Create(ctx, k, "default", newService("one-too-many", ""), registry.WriteOptions{})
	if err != nil || got.(*corev1.Service).Spec.ClusterIp != freed {
		t.Errorf("create after %s was released: %v %v", freed, got, err)
	}
}

// The apiserver's `kubernetes` Service gets the range's first address.
func TestAPIServerServiceGetsFirstAddress(t *testing.T) {
	_, etcd := testenv.Etcd(t)
	r := serviceRegistry(t, etcd, "10.100.0.0/16")
	ctx := context.Background()
	for range 2 { // a second apiserver's bootstrap leaves it alone
		if err := r.EnsureAPIServerService(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.Get(ctx, servicesKind(t), "default", "kubernetes", registry.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ip := got.(*corev1.Service).Spec.ClusterIp; ip != "10.100.0.1" {
		t.Errorf("kubernetes Service clusterIP %q; want 10.100.0.1", ip)
	}
}
