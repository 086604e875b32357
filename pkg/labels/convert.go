package labels

import (
	"fmt"
	"maps"
	"slices"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

// Operator spellings used inside API objects (metav1.LabelSelectorRequirement and
// corev1.NodeSelectorRequirement), as in Kubernetes.
const (
	LabelSelectorOpIn           = "In"
	LabelSelectorOpNotIn        = "NotIn"
	LabelSelectorOpExists       = "Exists"
	LabelSelectorOpDoesNotExist = "DoesNotExist"
	NodeSelectorOpGt            = "Gt"
	NodeSelectorOpLt            = "Lt"
)

// FromLabelSelector converts the structured selector embedded in API objects (e.g. a
// Deployment's spec.selector) into a Selector, with Kubernetes' semantics:
//   - a nil *LabelSelector matches nothing (Nothing), so an unset selector never adopts
//     every object in a namespace;
//   - a non-nil but empty LabelSelector ({}) matches everything (Everything);
//   - otherwise every matchLabels entry and every matchExpressions entry must match.
//
// Expression operators are "In", "NotIn", "Exists" and "DoesNotExist"; keys and values are
// validated as by NewRequirement.
func FromLabelSelector(ls *metav1.LabelSelector) (Selector, error) {
	if ls == nil {
		return Nothing(), nil
	}
	if len(ls.MatchLabels)+len(ls.MatchExpressions) == 0 {
		return Everything(), nil
	}
	reqs := make([]Requirement, 0, len(ls.MatchLabels)+len(ls.MatchExpressions))
	// Sorted so that, with several bad entries, the error is always about the same one.
	for _, k := range slices.Sorted(maps.Keys(ls.MatchLabels)) {
		r, err := NewRequirement(k, Equals, []string{ls.MatchLabels[k]})
		if err != nil {
			return nil, fmt.Errorf("matchLabels: %w", err)
		}
		reqs = append(reqs, r)
	}
	for i, expr := range ls.MatchExpressions {
		if expr == nil {
			return nil, fmt.Errorf("matchExpressions[%d]: must not be null", i)
		}
		var op Operator
		switch expr.Operator {
		case LabelSelectorOpIn:
			op = In
		case LabelSelectorOpNotIn:
			op = NotIn
		case LabelSelectorOpExists:
			op = Exists
		case LabelSelectorOpDoesNotExist:
			op = DoesNotExist
		default:
			return nil, fmt.Errorf("matchExpressions[%d]: %q is not a valid label selector operator (want In, NotIn, Exists or DoesNotExist)", i, expr.Operator)
		}
		r, err := NewRequirement(expr.Key, op, expr.Values)
		if err != nil {
			return nil, fmt.Errorf("matchExpressions[%d]: %w", i, err)
		}
		reqs = append(reqs, r)
	}
	return newInternalSelector(reqs), nil
}

// NodeSelectorRequirementsAsSelector converts the requirements of one node selector term (node
// affinity) into a Selector over node labels. Operators are "In", "NotIn", "Exists",
// "DoesNotExist", "Gt" and "Lt". As in Kubernetes an empty list matches nothing: a term with no
// requirements must not select every node.
func NodeSelectorRequirementsAsSelector(reqs []*corev1.NodeSelectorRequirement) (Selector, error) {
	if len(reqs) == 0 {
		return Nothing(), nil
	}
	out := make([]Requirement, 0, len(reqs))
	for i, expr := range reqs {
		if expr == nil {
			return nil, fmt.Errorf("matchExpressions[%d]: must not be null", i)
		}
		var op Operator
		switch expr.Operator {
		case LabelSelectorOpIn:
			op = In
		case LabelSelectorOpNotIn:
			op = NotIn
		case LabelSelectorOpExists:
			op = Exists
		case LabelSelectorOpDoesNotExist:
			op = DoesNotExist
		case NodeSelectorOpGt:
			op = GreaterThan
		case NodeSelectorOpLt:
			op = LessThan
		default:
			return nil, fmt.Errorf("matchExpressions[%d]: %q is not a valid node selector operator (want In, NotIn, Exists, DoesNotExist, Gt or Lt)", i, expr.Operator)
		}
		r, err := NewRequirement(expr.Key, op, expr.Values)
		if err != nil {
			return nil, fmt.Errorf("matchExpressions[%d]: %w", i, err)
		}
		out = append(out, r)
	}
	return newInternalSelector(out), nil
}
