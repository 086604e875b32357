package kubelet

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/informer"

	"github.com/skiff-project/skiff/node/kubelet/runtime"
	"github.com/skiff-project/skiff/node/kubelet/runtime/hollow"
)

// hollowKubelet runs a kubelet on the hollow runtime against a real control plane.
func hollowKubelet(t *testing.T, env *testenv.Env, configure func(*Config)) (*Kubelet, *hollow.Runtime) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	factory := informer.NewFactory(env.Client, env.JetStream(t), log)
	rt := hollow.New()
	cfg := Config{NodeName: "n1", NodeIP: "192.0.2.10", PodCIDR: "10.64.0.0/24", Runtime: rt, RootDir: t.TempDir(),
		Client: env.Client, Informers: factory, Logger: log, ClusterDNS: []string{"10.96.0.10"}}
	if configure != nil {
		configure(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = k.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; factory.Shutdown() })
	select {
	case <-k.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("kubelet not ready")
	}
	if !informer.WaitForCacheSync(ctx, k.pods, k.services) {
		t.Fatal("caches not synced")
	}
	return k, rt
}

func service(ns, name, ip string, ports ...*corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ApiVersion: "v1", Kind: "Service", Metadata: &metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: &corev1.ServiceSpec{ClusterIp: ip, Ports: ports, Selector: map[string]string{"app": name}}}
}

// TestContainerEnvironment: service links of the pod's namespace (and kubernetes.default) as
// Kubernetes names them, skipping services without a ClusterIP; env values, fieldRefs and
// $(VAR) references; the container's own variables win over service links.
func TestContainerEnvironment(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	for _, svc := range []*corev1.Service{
		service("shop", "demo-web", "10.96.0.5", &corev1.ServicePort{Name: "http", Port: 80, Protocol: "TCP"}, &corev1.ServicePort{Name: "dns", Port: 53, Protocol: "UDP"}),
		service("shop", "headless", "None", &corev1.ServicePort{Port: 80}),
		service("other", "elsewhere", "10.96.0.9", &corev1.ServicePort{Port: 80}),
	} {
		if _, err := env.Client.Create(ctx, &corev1.Namespace{ApiVersion: "v1", Kind: "Namespace", Metadata: &metav1.ObjectMeta{Name: svc.Metadata.Namespace}}); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
		if _, err := env.Client.Create(ctx, svc); err != nil {
			t.Fatalf("service %s: %v", svc.Metadata.Name, err)
		}
	}
	k, _ := hollowKubelet(t, env, nil)
	deadline := time.Now().Add(10 * time.Second)
	// The apiserver's own kubernetes Service (10.96.0.1, http 80 first) is there too.
	for k.services.Store().Len() < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Uid: "u1", Labels: map[string]string{"tier": "front"}},
		Spec: &corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"}}
	c := &corev1.Container{Name: "c", Image: "x:v1", Command: []string{"run", "$(GREETING)", "$$(GREETING)", "$(UNDEFINED)"},
		Env: []*corev1.EnvVar{
			{Name: "GREETING", Value: "hi"},
			{Name: "DEMO_WEB_SERVICE_PORT", Value: "override"},
			{Name: "REF", Value: "$(GREETING)-$(POD_NAME)-$(DEMO_WEB_SERVICE_HOST)"},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "TIER", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['tier']"}}},
			{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
		}}
	cfg, err := k.containerConfig(pod, c, &runtime.Sandbox{IP: "10.64.0.7"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"DEMO_WEB_SERVICE_HOST=10.96.0.5", "DEMO_WEB_SERVICE_PORT=override", "DEMO_WEB_SERVICE_PORT_HTTP=80", "DEMO_WEB_SERVICE_PORT_DNS=53",
		"DEMO_WEB_PORT=tcp://10.96.0.5:80", "DEMO_WEB_PORT_80_TCP=tcp://10.96.0.5:80", "DEMO_WEB_PORT_80_TCP_PROTO=tcp",
		"DEMO_WEB_PORT_80_TCP_PORT=80", "DEMO_WEB_PORT_80_TCP_ADDR=10.96.0.5", "DEMO_WEB_PORT_53_UDP=udp://10.96.0.5:53",
		"KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=80", "KUBERNETES_PORT_80_TCP=tcp://10.96.0.1:80",
		"GREETING=hi", "POD_NAME=web-1", "POD_IP=10.64.0.7", "HOST_IP=192.0.2.10", "TIER=front", "SA=sa",
		// REF comes before POD_NAME: as in Kubernetes, a reference to a later variable stays.
		"REF=hi-$(POD_NAME)-10.96.0.5",
	} {
		if !slices.Contains(cfg.Env, want) {
			t.Errorf("env lacks %s:\n%s", want, strings.Join(cfg.Env, "\n"))
		}
	}
	for _, e := range cfg.Env {
		if strings.HasPrefix(e, "HEADLESS_") || strings.HasPrefix(e, "PENDING_") || strings.HasPrefix(e, "ELSEWHERE_") {
			t.Errorf("env has %s: services without a ClusterIP or of another namespace give none", e)
		}
	}
	if want := []string{"run", "hi", "$(GREETING)", "$(UNDEFINED)"}; !slices.Equal(cfg.Command, want) {
		t.Errorf("command %q, want %q", cfg.Command, want)
	}
	bad := &corev1.Container{Name: "c", Env: []*corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.nonsense"}}}}}
	if _, err := k.containerConfig(pod, bad, nil, 0); err == nil || !strings.Contains(err.Error(), "status.nonsense") {
		t.Errorf("unsupported fieldPath: %v", err)
	}
}

// TestDNSConfig: ClusterFirst pods get the cluster DNS with Kubernetes' search path and
// ndots:5; Default and hostNetwork pods the host's resolver; None nothing.
func TestDNSConfig(t *testing.T) {
	k := &Kubelet{cfg: Config{ClusterDNS: []string{"10.96.0.10"}, ClusterDomain: "cluster.local"}}
	pod := func(policy string, hostNet bool) *corev1.Pod {
		return &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p", Namespace: "shop"}, Spec: &corev1.PodSpec{DnsPolicy: policy, HostNetwork: hostNet}}
	}
	d := k.dnsConfig(pod("ClusterFirst", false))
	if !slices.Equal(d.Servers, []string{"10.96.0.10"}) || !slices.Equal(d.Searches[:3], []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"}) ||
		!slices.Equal(d.Options, []string{"ndots:5"}) {
		t.Errorf("ClusterFirst: %+v", d)
	}
	host := hostResolvConf()
	if d := k.dnsConfig(pod("Default", false)); !slices.Equal(d.Servers, host.Servers) {
		t.Errorf("Default: %+v, host %+v", d, host)
	}
	if d := k.dnsConfig(pod("ClusterFirst", true)); !slices.Equal(d.Servers, host.Servers) {
		t.Errorf("ClusterFirst on the host network: %+v, want the host's", d)
	}
	if d := k.dnsConfig(pod("ClusterFirstWithHostNet", true)); !slices.Equal(d.Servers, []string{"10.96.0.10"}) {
		t.Errorf("ClusterFirstWithHostNet: %+v", d)
	}
	if d := k.dnsConfig(pod("None", false)); len(d.Servers)+len(d.Searches) != 0 {
		t.Errorf("None: %+v", d)
	}
}

// TestPodPhase follows Kubernetes' getPhase.
func TestPodPhase(t *testing.T) {
	running := &corev1.ContainerStatus{State: &corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	ok := &corev1.ContainerStatus{State: &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}
	failed := &corev1.ContainerStatus{State: &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	creating := &corev1.ContainerStatus{State: &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
	backoff := &corev1.ContainerStatus{State: &corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastState: &corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1}}}
	for _, tc := range []struct {
		policy string
		st     []*corev1.ContainerStatus
		want   string
	}{
		{"Always", []*corev1.ContainerStatus{creating}, "Pending"},
		{"Always", []*corev1.ContainerStatus{running, creating}, "Pending"},
		{"Always", []*corev1.ContainerStatus{running, backoff}, "Running"},
		{"Always", []*corev1.ContainerStatus{backoff}, "Running"},
		{"Always", []*corev1.ContainerStatus{ok}, "Running"},
		{"Never", []*corev1.ContainerStatus{ok, ok}, "Succeeded"},
		{"Never", []*corev1.ContainerStatus{ok, failed}, "Failed"},
		{"OnFailure", []*corev1.ContainerStatus{ok}, "Succeeded"},
		{"OnFailure", []*corev1.ContainerStatus{backoff}, "Running"},
		{"Never", []*corev1.ContainerStatus{running, failed}, "Running"},
	} {
		if got := podPhase(tc.policy, tc.st); got != tc.want {
			t.Errorf("%s %v: %s, want %s", tc.policy, tc.st, got, tc.want)
		}
	}
}

// TestImageGC: past the high threshold unused images go, least recently used first, until
// usage is under the low threshold; images a container uses stay.
func TestImageGC(t *testing.T) {
	env := testenv.Start(t)
	k, rt := hollowKubelet(t, env, func(c *Config) { c.ImageGCInterval = time.Hour })
	ctx := context.Background()
	for _, img := range []string{"old:v1", "newer:v1", "used:v1", "newest:v1"} {
		rt.AddImage(img, 10<<30)
	}
	rt.FsCapacity, rt.FsUsed = 100<<30, 80<<30
	k.noteImageUse("docker.io/library/old:v1")
	k.noteImageUse("docker.io/library/newer:v1")
	k.noteImageUse("docker.io/library/newest:v1")
	if removed, err := k.GarbageCollectImages(ctx); err != nil || len(removed) != 0 {
		t.Fatalf("under the 85%% threshold GC removed %v (%v)", removed, err)
	}
	sb, _ := rt.RunSandbox(ctx, runtime.SandboxConfig{Pod: runtime.PodRef{UID: "u", Name: "p", Namespace: "default"}})
	if _, err := rt.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c", Image: "docker.io/library/used:v1"}); err != nil {
		t.Fatal(err)
	}
	rt.FsUsed = 95 << 30 // over 85%: free down to 80%, 15 GiB, two 10 GiB images
	removed, err := k.GarbageCollectImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"docker.io/library/old:v1", "docker.io/library/newer:v1"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v (least recently used first, not the one in use)", removed, want)
	}
}

// TestExpand covers $(VAR) references as Kubernetes expands them.
func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"$(A)":        "1",
		"x$(A)y$(B)z": "x1ytwoz",
		"$$(A)":       "$(A)",
		"$(C)":        "$(C)",
		"$(A":         "$(A",
		"$A":          "$A",
		"cost $5":     "cost $5",
		"":            "",
	} {
		if got := expand(in, vars); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}
