package kubelet

import (
	"bufio"
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/pkg/apierrors"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/leaderelection"
)

// nodeLeaseNamespace holds nodes' heartbeat Leases, as in Kubernetes.
const nodeLeaseNamespace = "kube-node-lease"

func now() string { return time.Now().UTC().Format(time.RFC3339) }

// nodeLabels are the well-known labels every node carries, plus the configured ones.
func (k *Kubelet) nodeLabels() map[string]string {
	l := map[string]string{
		"kubernetes.io/hostname": k.cfg.NodeName,
		"kubernetes.io/os":       goruntime.GOOS,
		"kubernetes.io/arch":     goruntime.GOARCH,
	}
	for key, v := range k.cfg.Labels {
		l[key] = v
	}
	return l
}

// registerNode creates the Node, or, when it exists (a restart), updates what this kubelet
// owns in it: labels, taints at first registration only, the pod CIDR if it was empty.
func (k *Kubelet) registerNode(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		err := k.tryRegisterNode(ctx)
		if err == nil {
			return nil
		}
		k.log.Warn("node registration failed, retrying", "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
		}
	}
}

func (k *Kubelet) tryRegisterNode(ctx context.Context) error {
	status, err := k.nodeStatus(ctx)
	if err != nil {
		return err
	}
	stamp(status, nil)
	node := &corev1.Node{ApiVersion: "v1", Kind: "Node",
		Metadata: &metav1.ObjectMeta{Name: k.cfg.NodeName, Labels: k.nodeLabels()},
		Spec:     &corev1.NodeSpec{PodCidr: k.cfg.PodCIDR, Taints: k.cfg.Taints},
		Status:   status,
	}
	if k.cfg.PodCIDR != "" {
		node.Spec.PodCidrs = []string{k.cfg.PodCIDR}
	}
	created, err := k.client.Create(ctx, node)
	if err == nil {
		k.log.Info("node registered", "podCIDR", node.Spec.PodCidr)
		// Create ignores status (the status subresource): write it now.
		created.(*corev1.Node).Status = status
		if _, err := k.client.UpdateStatus(ctx, created); err != nil {
			return fmt.Errorf("node status: %w", err)
		}
		k.rememberNodeStatus(status)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node: %w", err)
	}
	obj, err := k.client.Get(ctx, k.nodesKind, "", k.cfg.NodeName)
	if err != nil {
		return fmt.Errorf("get node: %w", err)
	}
	existing := obj.(*corev1.Node)
	if existing.Metadata.Labels == nil {
		existing.Metadata.Labels = map[string]string{}
	}
	for key, v := range k.nodeLabels() {
		existing.Metadata.Labels[key] = v
	}
	if existing.Spec == nil {
		existing.Spec = &corev1.NodeSpec{}
	}
	if existing.Spec.PodCidr == "" && k.cfg.PodCIDR != "" {
		existing.Spec.PodCidr, existing.Spec.PodCidrs = k.cfg.PodCIDR, []string{k.cfg.PodCIDR}
	} else if existing.Spec.PodCidr != "" && k.cfg.PodCIDR != "" && existing.Spec.PodCidr != k.cfg.PodCIDR {
		return fmt.Errorf("node %s has podCIDR %s, this kubelet was given %s", k.cfg.NodeName, existing.Spec.PodCidr, k.cfg.PodCIDR)
	}
	updated, err := k.client.Update(ctx, existing)
	if err != nil {
		return fmt.Errorf("update node: %w", err)
	}
	updated.(*corev1.Node).Status = status
	if _, err := k.client.UpdateStatus(ctx, updated); err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	k.rememberNodeStatus(status)
	k.log.Info("node re-registered", "podCIDR", existing.Spec.PodCidr)
	return nil
}

// waitForPodCIDR learns the node's pod CIDR (given, or set by the control plane) and hands
// it to the runtime.
func (k *Kubelet) waitForPodCIDR(ctx context.Context) error {
	logged := false
	for k.podCIDR == "" {
		obj, err := k.client.Get(ctx, k.nodesKind, "", k.cfg.NodeName)
		if err == nil {
			k.podCIDR = obj.(*corev1.Node).GetSpec().GetPodCidr()
		}
		if k.podCIDR != "" {
			break
		}
		if !logged {
			k.log.Info("waiting for the control plane to set the node's spec.podCIDR")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if err := k.rt.UpdatePodCIDR(ctx, k.podCIDR); err != nil {
		return fmt.Errorf("pod network for %s: %w", k.podCIDR, err)
	}
	return nil
}

// nodeStatus computes the node's status: capacity, conditions, addresses, system info.
func (k *Kubelet) nodeStatus(ctx context.Context) (*corev1.NodeStatus, error) {
	rtName, rtVersion, err := k.rt.Version(ctx)
	if err != nil {
		return nil, err
	}
	capacity := map[string]string{
		"cpu":    strconv.Itoa(goruntime.NumCPU()),
		"memory": fmt.Sprintf("%dKi", memTotalKiB()),
		"pods":   strconv.Itoa(k.cfg.MaxPods),
	}
	if _, total, err := k.rt.ImageFsUsage(ctx); err == nil && total > 0 {
		capacity["ephemeral-storage"] = fmt.Sprintf("%dKi", total/1024)
	}
	for key, v := range k.cfg.Capacity {
		capacity[key] = v
	}
	allocatable := map[string]string{}
	for key, v := range capacity {
		allocatable[key] = v
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	st := &corev1.NodeStatus{
		Capacity: capacity, Allocatable: allocatable,
		Conditions: []*corev1.NodeCondition{
			{Type: "Ready", Status: "True", Reason: "KubeletReady", Message: "kubelet is posting ready status"},
			{Type: "MemoryPressure", Status: "False", Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
			{Type: "DiskPressure", Status: "False", Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
			{Type: "PIDPressure", Status: "False", Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		},
		Addresses: []*corev1.NodeAddress{{Type: "InternalIP", Address: k.cfg.NodeIP}, {Type: "Hostname", Address: k.cfg.NodeName}},
		NodeInfo: &corev1.NodeSystemInfo{
			MachineId: readTrim("/etc/machine-id"), BootId: readTrim("/proc/sys/kernel/random/boot_id"),
			KernelVersion: unix.ByteSliceToString(uts.Release[:]), OsImage: osImage(),
			ContainerRuntimeVersion: rtName + "://" + rtVersion, KubeletVersion: Version,
			OperatingSystem: goruntime.GOOS, Architecture: goruntime.GOARCH,
		},
		Images: k.nodeImages(ctx),
	}
	if port := k.serverPort(); port > 0 {
		st.DaemonEndpoints = &corev1.NodeDaemonEndpoints{KubeletEndpoint: &corev1.DaemonEndpoint{Port: int32(port)}}
	}
	return st, nil
}

// nodeImages lists the node's images for status.images, largest first (as Kubernetes).
func (k *Kubelet) nodeImages(ctx context.Context) []*corev1.ContainerImage {
	imgs, err := k.rt.ListImages(ctx)
	if err != nil {
		return nil
	}
	out := make([]*corev1.ContainerImage, 0, len(imgs))
	for _, img := range imgs {
		names := []string{img.Name}
		if img.Digest != "" {
			names = append(names, repoOf(img.Name)+"@"+img.Digest)
		}
		out = append(out, &corev1.ContainerImage{Names: names, SizeBytes: img.Size})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].SizeBytes != out[j].SizeBytes {
			return out[i].SizeBytes > out[j].SizeBytes
		}
		return out[i].Names[0] < out[j].Names[0]
	})
	if len(out) > 50 {
		out = out[:50]
	}
	return out
}

// repoOf strips the tag from a normalised reference.
func repoOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

// rememberNodeStatus records what was last written, to write again only on change.
func (k *Kubelet) rememberNodeStatus(st *corev1.NodeStatus) {
	k.nodeStatusMu.Lock()
	defer k.nodeStatusMu.Unlock()
	k.lastNodeStatus, k.lastNodeReport = proto.Clone(st).(*corev1.NodeStatus), time.Now()
}

// nodeStatusLoop writes the node's status when it changed, and every report interval.
func (k *Kubelet) nodeStatusLoop(ctx context.Context) {
	t := time.NewTicker(k.cfg.NodeStatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.syncNodeStatus(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("node status", "error", err)
		}
	}
}

func (k *Kubelet) syncNodeStatus(ctx context.Context) error {
	st, err := k.nodeStatus(ctx)
	if err != nil {
		return err
	}
	k.nodeStatusMu.Lock()
	unchanged := k.lastNodeStatus != nil && proto.Equal(withoutTimes(k.lastNodeStatus), withoutTimes(st)) &&
		time.Since(k.lastNodeReport) < k.cfg.NodeStatusReportInterval
	prev := k.lastNodeStatus
	k.nodeStatusMu.Unlock()
	if unchanged {
		return nil
	}
	stamp(st, prev)
	obj, err := k.client.Get(ctx, k.nodesKind, "", k.cfg.NodeName)
	if apierrors.IsNotFound(err) {
		// Deleted under us: register again, as Kubernetes' kubelet does.
		return k.tryRegisterNode(ctx)
	}
	if err != nil {
		return err
	}
	node := obj.(*corev1.Node)
	node.Status = st
	if _, err := k.client.UpdateStatus(ctx, node); err != nil {
		return err
	}
	k.rememberNodeStatus(st)
	return nil
}

// stamp sets conditions' heartbeat and transition times, keeping a transition time while the
// condition's status holds.
func stamp(st, prev *corev1.NodeStatus) {
	t := now()
	for _, c := range st.Conditions {
		c.LastHeartbeatTime, c.LastTransitionTime = t, t
		for _, p := range prev.GetConditions() {
			if p.Type == c.Type && p.Status == c.Status && p.LastTransitionTime != "" {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
	}
}

func withoutTimes(st *corev1.NodeStatus) *corev1.NodeStatus {
	c := proto.Clone(st).(*corev1.NodeStatus)
	for _, cond := range c.Conditions {
		cond.LastHeartbeatTime, cond.LastTransitionTime = "", ""
	}
	return c
}

// heartbeatLoop renews the node's Lease in kube-node-lease every HeartbeatInterval.
func (k *Kubelet) heartbeatLoop(ctx context.Context) {
	for {
		if err := k.renewLease(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("node lease", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(k.cfg.HeartbeatInterval):
		}
	}
}

func (k *Kubelet) renewLease(ctx context.Context) error {
	renew := time.Now().UTC().Format(leaderelection.MicroTimeFormat)
	dur := int32(k.cfg.LeaseDuration / time.Second)
	obj, err := k.client.Get(ctx, k.leasesKind, nodeLeaseNamespace, k.cfg.NodeName)
	if apierrors.IsNotFound(err) {
		lease := &coordinationv1.Lease{ApiVersion: "coordination.k8s.io/v1", Kind: "Lease",
			Metadata: &metav1.ObjectMeta{Name: k.cfg.NodeName, Namespace: nodeLeaseNamespace},
			Spec: &coordinationv1.LeaseSpec{HolderIdentity: k.cfg.NodeName, LeaseDurationSeconds: &dur,
				AcquireTime: renew, RenewTime: renew}}
		_, err = k.client.Create(ctx, lease)
		return err
	}
	if err != nil {
		return err
	}
	lease := obj.(*coordinationv1.Lease)
	if lease.Spec == nil {
		lease.Spec = &coordinationv1.LeaseSpec{}
	}
	lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds, lease.Spec.RenewTime = k.cfg.NodeName, &dur, renew
	_, err = k.client.Update(ctx, lease)
	if err == nil {
		k.metrics.heartbeats.Inc()
	}
	return err
}

func memTotalKiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func osImage() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return goruntime.GOOS
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return goruntime.GOOS
}
