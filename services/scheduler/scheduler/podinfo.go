package scheduler

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/resource"
	"github.com/skiff-project/skiff/pkg/labels"
	"github.com/skiff-project/skiff/pkg/taints"
)

// Resource names the scheduler accounts for by name; any other resource a pod requests is an
// extended resource, counted as an integer against the node's allocatable of the same name.
const (
	resourceCPU              = "cpu"
	resourceMemory           = "memory"
	resourcePods             = "pods"
	resourceEphemeralStorage = "ephemeral-storage"
)

// Requests assumed for scoring when a container names none, as Kubernetes does, so that pods
// without requests still spread instead of piling onto one "empty" node.
const (
	defaultMilliCPURequest = 100
	defaultMemoryRequest   = 200 << 20
)

// Resources is an amount of each resource: CPU in millicores, memory and storage in bytes,
// extended resources as integers.
type Resources struct {
	MilliCPU         int64
	Memory           int64
	EphemeralStorage int64
	Scalar           map[string]int64
}

func (r *Resources) add(o *Resources) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.EphemeralStorage += o.EphemeralStorage
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[string]int64{}
		}
		r.Scalar[k] += v
	}
}

func (r *Resources) sub(o *Resources) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.EphemeralStorage -= o.EphemeralStorage
	for k, v := range o.Scalar {
		if r.Scalar != nil {
			r.Scalar[k] -= v
		}
	}
}

// setMax raises each resource of r to at least o's.
func (r *Resources) setMax(o *Resources) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for k, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[string]int64{}
		}
		r.Scalar[k] = max(r.Scalar[k], v)
	}
}

// parseResourceList reads a Kubernetes resource list ("cpu": "500m", "memory": "1Gi"). pods
// is returned apart: it is a node's capacity, not something pods request. Quantities that do
// not parse count as zero (the apiserver validates them; the scheduler must not crash on a
// node object written by someone else).
func parseResourceList(list map[string]string) (r Resources, pods int64) {
	for name, s := range list {
		q, err := resource.ParseQuantity(s)
		if err != nil {
			continue
		}
		switch name {
		case resourceCPU:
			r.MilliCPU = q.MilliValue()
		case resourceMemory:
			r.Memory = q.Value()
		case resourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		case resourcePods:
			pods = q.Value()
		default:
			if r.Scalar == nil {
				r.Scalar = map[string]int64{}
			}
			r.Scalar[name] = q.Value()
		}
	}
	return r, pods
}

// PodInfo is a pod with everything the scheduler derives from it parsed once: requests,
// selectors, affinity terms and tolerations.
type PodInfo struct {
	Pod       *corev1.Pod
	Key       string // namespace/name
	Namespace string
	Labels    map[string]string
	NodeName  string
	Priority  int32
	// OwnerUID is the UID of the pod's controller (a ReplicaSet, ...), for spreading.
	OwnerUID string

	Requests Resources
	// NonZeroRequests are Requests with Kubernetes' defaults for unset CPU and memory, for
	// scoring only.
	NonZeroRequests Resources

	// nodeSelector is spec.nodeSelector; requiredNodeAffinity the required node affinity
	// terms (ORed); nil means no constraint.
	nodeSelector         labels.Selector
	requiredNodeAffinity []nodeSelectorTerm
	preferredNodeTerms   []weightedNodeTerm
	tolerations          []*corev1.Toleration

	requiredAffinity      []*affinityTerm
	requiredAntiAffinity  []*affinityTerm
	preferredAffinity     []*affinityTerm
	preferredAntiAffinity []*affinityTerm

	// parseErr is set when the pod's constraints cannot be understood; such a pod is
	// unschedulable with the error as its message.
	parseErr error
}

// nodeSelectorTerm is one term of a node selector: label expressions and field expressions
// (only metadata.name, as in Kubernetes), ANDed.
type nodeSelectorTerm struct {
	labels labels.Selector
	fields labels.Selector // over {"metadata.name": node name}
}

func (t *nodeSelectorTerm) matches(node *NodeInfo) bool {
	if t.labels != nil && !t.labels.Matches(node.Labels) {
		return false
	}
	if t.fields != nil && !t.fields.Matches(map[string]string{"metadata.name": node.Name}) {
		return false
	}
	return true
}

type weightedNodeTerm struct {
	weight int64
	term   nodeSelectorTerm
}

// affinityTerm is a pod (anti-)affinity term: the pods matching selector in namespaces,
// grouped by the value of topologyKey on their nodes.
type affinityTerm struct {
	selector labels.Selector
	// namespaces the term looks in; allNamespaces when the namespace selector is empty ({}).
	namespaces    []string
	allNamespaces bool
	nsSelector    labels.Selector // a non-empty namespace selector, or nil
	topologyKey   string
	weight        int64
	// signature identifies equal terms, so that the terms of many replicas are kept once.
	signature string
}

// matchesPod reports whether the term selects pod p (in namespace ns with labels lbls).
func (t *affinityTerm) matchesPod(ns string, lbls map[string]string, nsLabels func(string) map[string]string) bool {
	if !t.inNamespace(ns, nsLabels) {
		return false
	}
	return t.selector.Matches(lbls)
}

func (t *affinityTerm) inNamespace(ns string, nsLabels func(string) map[string]string) bool {
	if t.allNamespaces || slices.Contains(t.namespaces, ns) {
		return true
	}
	if t.nsSelector != nil && nsLabels != nil {
		return t.nsSelector.Matches(nsLabels(ns))
	}
	return false
}

// NewPodInfo parses what the scheduler needs from pod.
func NewPodInfo(pod *corev1.Pod) *PodInfo {
	md := pod.GetMetadata()
	spec := pod.GetSpec()
	pi := &PodInfo{
		Pod:       pod,
		Key:       md.GetNamespace() + "/" + md.GetName(),
		Namespace: md.GetNamespace(),
		Labels:    md.GetLabels(),
		NodeName:  spec.GetNodeName(),
		Priority:  spec.GetPriority(),
	}
	for _, ref := range md.GetOwnerReferences() {
		if ref.GetController() {
			pi.OwnerUID = ref.GetUid()
		}
	}
	pi.Requests, pi.NonZeroRequests = podRequests(spec)
	pi.tolerations = spec.GetTolerations()
	if err := pi.parseConstraints(spec); err != nil {
		pi.parseErr = err
	}
	return pi
}

// podRequests is what a pod needs on its node: the larger of the sum of its containers'
// requests and the largest init container's (init containers run one at a time, first).
func podRequests(spec *corev1.PodSpec) (req, nonZero Resources) {
	for _, c := range spec.GetContainers() {
		r, _ := parseResourceList(c.GetResources().GetRequests())
		req.add(&r)
		if r.MilliCPU == 0 {
			r.MilliCPU = defaultMilliCPURequest
		}
		if r.Memory == 0 {
			r.Memory = defaultMemoryRequest
		}
		nonZero.add(&r)
	}
	for _, c := range spec.GetInitContainers() {
		r, _ := parseResourceList(c.GetResources().GetRequests())
		req.setMax(&r)
		nonZero.setMax(&r)
	}
	return req, nonZero
}

func (pi *PodInfo) parseConstraints(spec *corev1.PodSpec) error {
	if len(spec.GetNodeSelector()) > 0 {
		sel, err := labels.ValidatedSelectorFromSet(spec.GetNodeSelector())
		if err != nil {
			return fmt.Errorf("spec.nodeSelector: %w", err)
		}
		pi.nodeSelector = sel
	}
	aff := spec.GetAffinity()
	if na := aff.GetNodeAffinity(); na != nil {
		if req := na.GetRequiredDuringSchedulingIgnoredDuringExecution(); req != nil {
			// A required node selector with no terms matches no node, as in Kubernetes.
			pi.requiredNodeAffinity = []nodeSelectorTerm{}
			for i, t := range req.GetNodeSelectorTerms() {
				term, err := parseNodeSelectorTerm(t)
				if err != nil {
					return fmt.Errorf("required node affinity term %d: %w", i, err)
				}
				pi.requiredNodeAffinity = append(pi.requiredNodeAffinity, term)
			}
		}
		for i, p := range na.GetPreferredDuringSchedulingIgnoredDuringExecution() {
			term, err := parseNodeSelectorTerm(p.GetPreference())
			if err != nil {
				return fmt.Errorf("preferred node affinity term %d: %w", i, err)
			}
			pi.preferredNodeTerms = append(pi.preferredNodeTerms, weightedNodeTerm{weight: int64(p.GetWeight()), term: term})
		}
	}
	var err error
	if pa := aff.GetPodAffinity(); pa != nil {
		if pi.requiredAffinity, err = pi.parseTerms(pa.GetRequiredDuringSchedulingIgnoredDuringExecution(), nil); err != nil {
			return fmt.Errorf("pod affinity: %w", err)
		}
		if pi.preferredAffinity, err = pi.parseTerms(nil, pa.GetPreferredDuringSchedulingIgnoredDuringExecution()); err != nil {
			return fmt.Errorf("pod affinity: %w", err)
		}
	}
	if pa := aff.GetPodAntiAffinity(); pa != nil {
		if pi.requiredAntiAffinity, err = pi.parseTerms(pa.GetRequiredDuringSchedulingIgnoredDuringExecution(), nil); err != nil {
			return fmt.Errorf("pod anti-affinity: %w", err)
		}
		if pi.preferredAntiAffinity, err = pi.parseTerms(nil, pa.GetPreferredDuringSchedulingIgnoredDuringExecution()); err != nil {
			return fmt.Errorf("pod anti-affinity: %w", err)
		}
	}
	return nil
}

func parseNodeSelectorTerm(t *corev1.NodeSelectorTerm) (nodeSelectorTerm, error) {
	var term nodeSelectorTerm
	if len(t.GetMatchExpressions()) == 0 && len(t.GetMatchFields()) == 0 {
		// An empty term matches nothing.
		term.labels = labels.Nothing()
		return term, nil
	}
	if len(t.GetMatchExpressions()) > 0 {
		sel, err := labels.NodeSelectorRequirementsAsSelector(t.GetMatchExpressions())
		if err != nil {
			return term, err
		}
		term.labels = sel
	}
	if len(t.GetMatchFields()) > 0 {
		for _, f := range t.GetMatchFields() {
			if f.GetKey() != "metadata.name" {
				return term, fmt.Errorf("matchFields: field %q is not supported (only metadata.name)", f.GetKey())
			}
		}
		sel, err := labels.NodeSelectorRequirementsAsSelector(t.GetMatchFields())
		if err != nil {
			return term, err
		}
		term.fields = sel
	}
	return term, nil
}

func (pi *PodInfo) parseTerms(required []*corev1.PodAffinityTerm, weighted []*corev1.WeightedPodAffinityTerm) ([]*affinityTerm, error) {
	var out []*affinityTerm
	add := func(t *corev1.PodAffinityTerm, weight int64) error {
		if t.GetTopologyKey() == "" {
			return fmt.Errorf("topologyKey must not be empty")
		}
		sel, err := labels.FromLabelSelector(t.GetLabelSelector())
		if err != nil {
			return err
		}
		at := &affinityTerm{selector: sel, topologyKey: t.GetTopologyKey(), weight: weight}
		nsSel := t.GetNamespaceSelector()
		switch {
		case nsSel != nil && len(nsSel.GetMatchLabels())+len(nsSel.GetMatchExpressions()) == 0:
			at.allNamespaces = true // {} selects every namespace
		case nsSel != nil:
			if at.nsSelector, err = labels.FromLabelSelector(nsSel); err != nil {
				return fmt.Errorf("namespaceSelector: %w", err)
			}
		}
		at.namespaces = append(at.namespaces, t.GetNamespaces()...)
		if len(at.namespaces) == 0 && nsSel == nil {
			at.namespaces = []string{pi.Namespace} // the pod's own namespace
		}
		sort.Strings(at.namespaces)
		nsSelStr := ""
		if at.nsSelector != nil {
			nsSelStr = at.nsSelector.String()
		}
		at.signature = strings.Join([]string{at.topologyKey, strings.Join(at.namespaces, ","),
			fmt.Sprint(at.allNamespaces), nsSelStr, sel.String()}, "|")
		out = append(out, at)
		return nil
	}
	for i, t := range required {
		if err := add(t, 0); err != nil {
			return nil, fmt.Errorf("required term %d: %w", i, err)
		}
	}
	for i, w := range weighted {
		if err := add(w.GetPodAffinityTerm(), int64(w.GetWeight())); err != nil {
			return nil, fmt.Errorf("preferred term %d: %w", i, err)
		}
	}
	return out, nil
}

// hasInterPodConstraints reports whether scheduling the pod needs the cluster's pod
// topology at all (it does anyway when existing pods have anti-affinity terms).
func (pi *PodInfo) hasInterPodConstraints() bool {
	return len(pi.requiredAffinity)+len(pi.requiredAntiAffinity)+len(pi.preferredAffinity)+len(pi.preferredAntiAffinity) > 0
}

// toleratesTaint is Kubernetes' toleration matching (pkg/taints, shared with the node
// lifecycle controller).
func toleratesTaint(tols []*corev1.Toleration, taint *corev1.Taint) bool {
	return taints.Tolerates(tols, taint)
}

// specEqual reports whether two versions of a pod ask for the same thing.
func specEqual(a, b *PodInfo) bool { return proto.Equal(a.Pod.GetSpec(), b.Pod.GetSpec()) }
