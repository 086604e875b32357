package kubelet

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/resource"
	"github.com/skiff-project/skiff/pkg/informer"

	"github.com/skiff-project/skiff/node/kubelet/runtime"
)

// sandboxConfig is the pod's sandbox: its hostname, DNS and network mode.
func (k *Kubelet) sandboxConfig(pod *corev1.Pod) runtime.SandboxConfig {
	md, spec := pod.GetMetadata(), pod.GetSpec()
	hostname := spec.GetHostname()
	if hostname == "" {
		hostname = md.GetName()
	}
	if len(hostname) > 63 {
		hostname = strings.TrimRight(hostname[:63], "-.")
	}
	cfg := runtime.SandboxConfig{
		Pod:         runtime.PodRef{UID: md.GetUid(), Namespace: md.GetNamespace(), Name: md.GetName()},
		Hostname:    hostname,
		HostNetwork: spec.GetHostNetwork(),
		DNS:         k.dnsConfig(pod),
	}
	if sub := spec.GetSubdomain(); sub != "" {
		cfg.HostAliases = []string{fmt.Sprintf("%s.%s.%s.svc.%s", hostname, sub, md.GetNamespace(), k.cfg.ClusterDomain)}
	}
	return cfg
}

// dnsConfig is the pod's resolv.conf per its dnsPolicy, as Kubernetes writes it: ClusterFirst
// pods ask the cluster DNS with the search path NS.svc.DOMAIN svc.DOMAIN DOMAIN (then the
// host's) and ndots:5; Default pods get the host's resolv.conf.
func (k *Kubelet) dnsConfig(pod *corev1.Pod) runtime.DNSConfig {
	spec := pod.GetSpec()
	policy := spec.GetDnsPolicy()
	if policy == "" {
		policy = "ClusterFirst"
	}
	if policy == "ClusterFirst" && spec.GetHostNetwork() {
		policy = "Default"
	}
	if policy == "ClusterFirstWithHostNet" {
		policy = "ClusterFirst"
	}
	host := hostResolvConf()
	switch policy {
	case "None":
		return runtime.DNSConfig{}
	case "ClusterFirst":
		if len(k.cfg.ClusterDNS) == 0 {
			// No cluster DNS configured: Kubernetes falls back to the host's resolver.
			return host
		}
		d := k.cfg.ClusterDomain
		ns := pod.GetMetadata().GetNamespace()
		searches := append([]string{ns + ".svc." + d, "svc." + d, d}, host.Searches...)
		if len(searches) > 32 {
			searches = searches[:32]
		}
		return runtime.DNSConfig{Servers: k.cfg.ClusterDNS, Searches: searches, Options: []string{"ndots:5"}}
	}
	return host
}

// hostResolvConf reads the host's /etc/resolv.conf.
func hostResolvConf() runtime.DNSConfig {
	var d runtime.DNSConfig
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return d
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			d.Servers = append(d.Servers, fields[1])
		case "search", "domain":
			d.Searches = append(d.Searches, fields[1:]...)
		case "options":
			d.Options = append(d.Options, fields[1:]...)
		}
	}
	return d
}

// containerConfig resolves a container's spec for the runtime: environment (service links,
// values, fieldRefs, $(VAR) references), command and args with $(VAR) expanded, volumes,
// resources and its log file.
func (k *Kubelet) containerConfig(pod *corev1.Pod, c *corev1.Container, sb *runtime.Sandbox, attempt int) (runtime.ContainerConfig, error) {
	md := pod.GetMetadata()
	cfg := runtime.ContainerConfig{Name: c.GetName(), Attempt: attempt, WorkingDir: c.GetWorkingDir()}
	env, err := k.environment(pod, c, sb)
	if err != nil {
		return cfg, err
	}
	lookup := map[string]string{}
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		lookup[name] = value
	}
	cfg.Env = env
	for _, a := range c.GetCommand() {
		cfg.Command = append(cfg.Command, expand(a, lookup))
	}
	for _, a := range c.GetArgs() {
		cfg.Args = append(cfg.Args, expand(a, lookup))
	}
	mounts, err := k.mounts(pod, c)
	if err != nil {
		return cfg, err
	}
	cfg.Mounts = mounts
	res := c.GetResources()
	if q, ok := res.GetLimits()["memory"]; ok {
		v, err := resource.ParseQuantity(q)
		if err != nil {
			return cfg, fmt.Errorf("memory limit %q: %w", q, err)
		}
		cfg.MemoryLimitBytes = v.Value()
	}
	if q, ok := res.GetLimits()["cpu"]; ok {
		v, err := resource.ParseQuantity(q)
		if err != nil {
			return cfg, fmt.Errorf("cpu limit %q: %w", q, err)
		}
		cfg.CPULimitMilli = v.MilliValue()
	}
	if q, ok := res.GetRequests()["cpu"]; ok {
		if v, err := resource.ParseQuantity(q); err == nil {
			cfg.CPURequestMilli = v.MilliValue()
		}
	}
	dir := filepath.Join(k.logDir(md.GetNamespace(), md.GetName(), md.GetUid()), c.GetName())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cfg, err
	}
	cfg.LogPath = filepath.Join(dir, strconv.Itoa(attempt)+".log")
	return cfg, nil
}

// environment is the container's environment in Kubernetes' order: the service links of the
// pod's namespace, then the container's env (which wins), each value with $(VAR) references
// to earlier variables expanded.
func (k *Kubelet) environment(pod *corev1.Pod, c *corev1.Container, sb *runtime.Sandbox) ([]string, error) {
	var order []string
	values := map[string]string{}
	set := func(name, value string) {
		if _, ok := values[name]; !ok {
			order = append(order, name)
		}
		values[name] = value
	}
	for _, kv := range k.serviceEnv(pod.GetMetadata().GetNamespace()) {
		set(kv[0], kv[1])
	}
	for _, e := range c.GetEnv() {
		value := e.GetValue()
		switch src := e.GetValueFrom(); {
		case src == nil:
			value = expand(value, values)
		case src.GetFieldRef() != nil:
			v, err := fieldRefValue(pod, src.GetFieldRef().GetFieldPath(), sb, k.cfg.NodeIP)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", e.GetName(), err)
			}
			value = v
		case src.GetSecretKeyRef() != nil:
			return nil, fmt.Errorf("env %s: secretKeyRef: this cluster has no Secrets yet", e.GetName())
		case src.GetConfigMapKeyRef() != nil:
			return nil, fmt.Errorf("env %s: configMapKeyRef: this cluster has no ConfigMaps yet", e.GetName())
		}
		set(e.GetName(), value)
	}
	out := make([]string, 0, len(order))
	for _, name := range order {
		out = append(out, name+"="+values[name])
	}
	return out, nil
}

// fieldRefValue is the downward API: the pod's own fields.
func fieldRefValue(pod *corev1.Pod, path string, sb *runtime.Sandbox, nodeIP string) (string, error) {
	md := pod.GetMetadata()
	switch path {
	case "metadata.name":
		return md.GetName(), nil
	case "metadata.namespace":
		return md.GetNamespace(), nil
	case "metadata.uid":
		return md.GetUid(), nil
	case "spec.nodeName":
		return pod.GetSpec().GetNodeName(), nil
	case "spec.serviceAccountName":
		return pod.GetSpec().GetServiceAccountName(), nil
	case "status.hostIP", "status.hostIPs":
		return nodeIP, nil
	case "status.podIP", "status.podIPs":
		if sb == nil {
			return "", nil
		}
		return sb.IP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": md.GetLabels(), "metadata.annotations": md.GetAnnotations()} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// serviceEnv is the Docker-links style variables of the services that exist in namespace
// (and the default namespace's "kubernetes" service), as Kubernetes sets them: for service
// "demo" with ClusterIP 10.96.0.5 and port 80 (name "http"), DEMO_SERVICE_HOST=10.96.0.5,
// DEMO_SERVICE_PORT=80, DEMO_SERVICE_PORT_HTTP=80, DEMO_PORT=tcp://10.96.0.5:80,
// DEMO_PORT_80_TCP=tcp://10.96.0.5:80, DEMO_PORT_80_TCP_PROTO=tcp, DEMO_PORT_80_TCP_PORT=80,
// DEMO_PORT_80_TCP_ADDR=10.96.0.5. Services without a ClusterIP (headless, or none allocated)
// give none.
func (k *Kubelet) serviceEnv(namespace string) [][2]string {
	svcs, _ := k.services.Store().ByIndex(informer.NamespaceIndex, namespace)
	if namespace != "default" {
		if m, ok := k.services.Store().Get("default", "kubernetes"); ok {
			svcs = append(svcs, m)
		}
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].GetMetadata().GetName() < svcs[j].GetMetadata().GetName() })
	var out [][2]string
	for _, obj := range svcs {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			continue
		}
		ip := svc.GetSpec().GetClusterIp()
		ports := svc.GetSpec().GetPorts()
		if ip == "" || ip == "None" || len(ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(svc.GetMetadata().GetName(), "-", "_"))
		out = append(out, [2]string{name + "_SERVICE_HOST", ip}, [2]string{name + "_SERVICE_PORT", strconv.Itoa(int(ports[0].GetPort()))})
		for _, p := range ports {
			if p.GetName() != "" {
				out = append(out, [2]string{name + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(p.GetName(), "-", "_")), strconv.Itoa(int(p.GetPort()))})
			}
		}
		proto := func(p *corev1.ServicePort) string {
			if p.GetProtocol() == "" {
				return "tcp"
			}
			return strings.ToLower(p.GetProtocol())
		}
		first := ports[0]
		out = append(out, [2]string{name + "_PORT", fmt.Sprintf("%s://%s:%d", proto(first), ip, first.GetPort())})
		for _, p := range ports {
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.GetPort(), strings.ToUpper(proto(p)))
			out = append(out,
				[2]string{prefix, fmt.Sprintf("%s://%s:%d", proto(p), ip, p.GetPort())},
				[2]string{prefix + "_PROTO", proto(p)},
				[2]string{prefix + "_PORT", strconv.Itoa(int(p.GetPort()))},
				[2]string{prefix + "_ADDR", ip})
		}
	}
	return out
}

// expand replaces $(VAR) with VAR's value where VAR is defined, keeps unknown references as
// they are and turns $$ into $, as Kubernetes expands command, args and env values.
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// mounts makes the pod's volumes (emptyDir under the pod's dir, hostPath as given) and returns
// the container's mounts of them.
func (k *Kubelet) mounts(pod *corev1.Pod, c *corev1.Container) ([]runtime.Mount, error) {
	vols := map[string]*corev1.Volume{}
	for _, v := range pod.GetSpec().GetVolumes() {
		vols[v.GetName()] = v
	}
	var out []runtime.Mount
	for _, m := range c.GetVolumeMounts() {
		v, ok := vols[m.GetName()]
		if !ok {
			return nil, fmt.Errorf("volume mount %s: no volume of that name", m.GetName())
		}
		var src string
		switch {
		case v.GetEmptyDir() != nil:
			src = filepath.Join(k.podDir(pod.GetMetadata().GetUid()), "volumes", "empty-dir", v.GetName())
			if err := os.MkdirAll(src, 0o777); err != nil {
				return nil, fmt.Errorf("emptyDir %s: %w", v.GetName(), err)
			}
			_ = os.Chmod(src, 0o777)
		case v.GetHostPath() != nil:
			hp := v.GetHostPath()
			src = hp.GetPath()
			if err := prepareHostPath(src, hp.GetType()); err != nil {
				return nil, fmt.Errorf("hostPath %s: %w", v.GetName(), err)
			}
		default:
			return nil, fmt.Errorf("volume %s: only emptyDir and hostPath volumes are supported by this kubelet", v.GetName())
		}
		if sp := m.GetSubPath(); sp != "" {
			src = filepath.Join(src, sp)
			if _, err := os.Stat(src); os.IsNotExist(err) {
				if err := os.MkdirAll(src, 0o755); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, runtime.Mount{HostPath: src, ContainerPath: m.GetMountPath(), ReadOnly: m.GetReadOnly()})
	}
	return out, nil
}

// prepareHostPath checks (or creates) a hostPath per its type, as Kubernetes does.
func prepareHostPath(path, typ string) error {
	st, err := os.Stat(path)
	switch typ {
	case "":
		return nil
	case "DirectoryOrCreate":
		if os.IsNotExist(err) {
			return os.MkdirAll(path, 0o755)
		}
	case "FileOrCreate":
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch typ {
	case "Directory", "DirectoryOrCreate":
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", path)
		}
	case "File", "FileOrCreate":
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s is not a file", path)
		}
	case "Socket":
		if st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s is not a socket", path)
		}
	}
	return nil
}
