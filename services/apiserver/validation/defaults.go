package validation

import (
	"strings"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Default values, as Kubernetes' defaulters set them.
const (
	DefaultSchedulerName                 = "default-scheduler"
	DefaultTerminationGracePeriodSeconds = int64(30)
	DefaultRevisionHistoryLimit          = int32(10)
	DefaultProgressDeadlineSeconds       = int32(600)
	DefaultMaxUnavailable                = "25%"
	DefaultMaxSurge                      = "25%"
)

// Default fills unset fields in place with Kubernetes' defaults. It is called on create and
// update, before validation, so stored objects always carry explicit values. Status is left
// alone except a namespace's phase.
func Default(obj scheme.Object) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		if o.Status == nil {
			o.Status = &corev1.NamespaceStatus{}
		}
		if o.Status.Phase == "" {
			o.Status.Phase = "Active"
		}
	case *corev1.Node:
		defaultNodeStatus(o.GetStatus())
	case *corev1.Pod:
		if o.Spec == nil {
			o.Spec = &corev1.PodSpec{}
		}
		defaultPodSpec(o.Spec)
	case *corev1.Service:
		if o.Spec == nil {
			o.Spec = &corev1.ServiceSpec{}
		}
		defaultServiceSpec(o.Spec)
	case *corev1.Endpoints:
		for _, ss := range o.GetSubsets() {
			for _, p := range ss.GetPorts() {
				if p.Protocol == "" {
					p.Protocol = "TCP"
				}
			}
		}
	case *appsv1.ReplicaSet:
		if o.Spec == nil {
			o.Spec = &appsv1.ReplicaSetSpec{}
		}
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr(int32(1))
		}
		defaultTemplate(o.Spec.Template)
	case *appsv1.Deployment:
		if o.Spec == nil {
			o.Spec = &appsv1.DeploymentSpec{}
		}
		defaultDeploymentSpec(o.Spec)
	}
}

func ptr[T any](v T) *T { return &v }

// defaultNodeStatus: a node that reports no allocatable resources offers all its capacity.
func defaultNodeStatus(st *corev1.NodeStatus) {
	if st == nil || len(st.Allocatable) > 0 || len(st.Capacity) == 0 {
		return
	}
	st.Allocatable = make(map[string]string, len(st.Capacity))
	for k, v := range st.Capacity {
		st.Allocatable[k] = v
	}
}

func defaultTemplate(t *corev1.PodTemplateSpec) {
	if t == nil {
		return
	}
	if t.Spec == nil {
		t.Spec = &corev1.PodSpec{}
	}
	defaultPodSpec(t.Spec)
}

func defaultPodSpec(spec *corev1.PodSpec) {
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = "Always"
	}
	if spec.TerminationGracePeriodSeconds == nil {
		spec.TerminationGracePeriodSeconds = ptr(DefaultTerminationGracePeriodSeconds)
	}
	if spec.DnsPolicy == "" {
		spec.DnsPolicy = "ClusterFirst"
	}
	if spec.SchedulerName == "" {
		spec.SchedulerName = DefaultSchedulerName
	}
	for _, v := range spec.Volumes {
		// A volume with no source is scratch space, as in Kubernetes.
		if v != nil && v.HostPath == nil && v.EmptyDir == nil && v.Secret == nil && v.ConfigMap == nil && v.PersistentVolumeClaim == nil {
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
	}
	for _, c := range spec.InitContainers {
		defaultContainer(c, spec.HostNetwork)
	}
	for _, c := range spec.Containers {
		defaultContainer(c, spec.HostNetwork)
	}
}

func defaultContainer(c *corev1.Container, hostNetwork bool) {
	if c == nil {
		return
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = defaultPullPolicy(c.Image)
	}
	for _, p := range c.Ports {
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		// On the host's network the container's port is the host's port.
		if hostNetwork && p.HostPort == 0 {
			p.HostPort = p.ContainerPort
		}
	}
	// A limit without a request requests the limit: the scheduler must reserve what the
	// container may use.
	if r := c.Resources; r != nil && len(r.Limits) > 0 {
		for name, q := range r.Limits {
			if _, ok := r.Requests[name]; !ok {
				if r.Requests == nil {
					r.Requests = map[string]string{}
				}
				r.Requests[name] = q
			}
		}
	}
	defaultProbe(c.LivenessProbe)
	defaultProbe(c.ReadinessProbe)
	defaultProbe(c.StartupProbe)
}

// defaultPullPolicy: a ":latest" or untagged image may change under the same name, so it is
// pulled every time; a pinned tag or digest is pulled only when missing.
func defaultPullPolicy(image string) string {
	if imageTag(image) == "latest" {
		return "Always"
	}
	return "IfNotPresent"
}

// imageTag returns the tag of an image reference, "latest" when it has neither tag nor
// digest, and "" when it is pinned by digest alone. A registry port ("host:5000/app") is
// not a tag.
func imageTag(image string) string {
	ref, digest := image, ""
	if i := strings.Index(ref, "@"); i >= 0 {
		ref, digest = ref[:i], ref[i+1:]
	}
	last := ref
	if i := strings.LastIndex(ref, "/"); i >= 0 {
		last = ref[i+1:]
	}
	if i := strings.LastIndex(last, ":"); i >= 0 {
		return last[i+1:]
	}
	if digest != "" {
		return ""
	}
	return "latest"
}

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if h := p.HttpGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = "HTTP"
		}
	}
}

func defaultServiceSpec(spec *corev1.ServiceSpec) {
	if spec.Type == "" {
		spec.Type = "ClusterIP"
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = "None"
	}
	for _, p := range spec.Ports {
		if p.Protocol == "" {
			p.Protocol = "TCP"
		}
		// Without a targetPort traffic goes to the same port number on the pods.
		if isZeroIntOrString(p.TargetPort) {
			p.TargetPort = &metav1.IntOrString{Value: &metav1.IntOrString_IntVal{IntVal: p.Port}}
		}
	}
	if (spec.Type == "NodePort" || spec.Type == "LoadBalancer") && spec.ExternalTrafficPolicy == "" {
		spec.ExternalTrafficPolicy = "Cluster"
	}
	if spec.Type != "ExternalName" && spec.InternalTrafficPolicy == "" {
		spec.InternalTrafficPolicy = "Cluster"
	}
}

// isZeroIntOrString is true for an absent IntOrString, 0 and "", which Kubernetes all treats
// as unset.
func isZeroIntOrString(v *metav1.IntOrString) bool {
	switch x := v.GetValue().(type) {
	case *metav1.IntOrString_IntVal:
		return x.IntVal == 0
	case *metav1.IntOrString_StrVal:
		return x.StrVal == ""
	}
	return true
}

func defaultDeploymentSpec(spec *appsv1.DeploymentSpec) {
	if spec.Replicas == nil {
		spec.Replicas = ptr(int32(1))
	}
	if spec.Strategy == nil {
		spec.Strategy = &appsv1.DeploymentStrategy{}
	}
	if spec.Strategy.Type == "" {
		spec.Strategy.Type = "RollingUpdate"
	}
	if spec.Strategy.Type == "RollingUpdate" {
		if spec.Strategy.RollingUpdate == nil {
			spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		ru := spec.Strategy.RollingUpdate
		if ru.MaxUnavailable.GetValue() == nil {
			ru.MaxUnavailable = &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: DefaultMaxUnavailable}}
		}
		if ru.MaxSurge.GetValue() == nil {
			ru.MaxSurge = &metav1.IntOrString{Value: &metav1.IntOrString_StrVal{StrVal: DefaultMaxSurge}}
		}
	}
	if spec.RevisionHistoryLimit == nil {
		spec.RevisionHistoryLimit = ptr(DefaultRevisionHistoryLimit)
	}
	if spec.ProgressDeadlineSeconds == nil {
		spec.ProgressDeadlineSeconds = ptr(DefaultProgressDeadlineSeconds)
	}
	defaultTemplate(spec.Template)
}
