package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
)

// ErrNoNodes is the answer when the cluster has no node at all, in Kubernetes' words.
var ErrNoNodes = errors.New("no nodes available to schedule pods")

// FitError says why a pod fits no node: how many nodes gave each reason.
type FitError struct {
	NumAllNodes int
	Reasons     map[string]int
}

// Error is Kubernetes' message, e.g. "0/3 nodes are available: 1 Insufficient cpu, 2
// node(s) didn't match Pod's node affinity/selector." (reasons sorted, as Kubernetes does).
func (e *FitError) Error() string {
	parts := make([]string, 0, len(e.Reasons))
	for r, n := range e.Reasons {
		parts = append(parts, strconv.Itoa(n)+" "+r)
	}
	sort.Strings(parts)
	msg := fmt.Sprintf("0/%d nodes are available", e.NumAllNodes)
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	return msg + "."
}

// Scoring weights: Kubernetes' default profile.
const (
	weightLeastAllocated  = 1
	weightBalanced        = 1
	weightNodeAffinity    = 2
	weightTaintToleration = 3
	weightInterPod        = 2
	weightSpread          = 2
	maxNodeScore          = 100
)

// Kubernetes' node sampling: in large clusters the scheduler stops looking once it has found
// enough feasible nodes (at least minFeasibleNodes, else a percentage of the cluster).
const (
	minFeasibleNodes           = 100
	minFeasibleNodesPercentage = 5
)

// numFeasibleNodesToFind is how many feasible nodes a cycle looks for before scoring:
// percentageOfNodesToScore of the cluster, or when 0 Kubernetes' adaptive default (50% at
// 0 nodes, falling by 1% per 125 nodes, at least 5%), and never fewer than 100.
func numFeasibleNodesToFind(percentage, numAll int) int {
	if numAll < minFeasibleNodes {
		return numAll
	}
	p := percentage
	if p <= 0 {
		p = max(50-numAll/125, minFeasibleNodesPercentage)
	}
	if p >= 100 {
		return numAll
	}
	return max(numAll*p/100, minFeasibleNodes)
}

// algorithm picks nodes for pods from the cache.
type algorithm struct {
	cache *Cache
	// percentageOfNodesToScore: see numFeasibleNodesToFind.
	percentageOfNodesToScore int
	// nextStart rotates where sampling starts, so every node gets looked at.
	nextStart int
	rnd       *rand.Rand
}

// result of one scheduling attempt.
type result struct {
	node      string
	evaluated int // nodes filtered
	feasible  int // nodes that passed
}

// schedule finds the best node for pi and assumes pi onto it, all under the cache lock, so
// that the next cycle sees the node's resources taken. It returns ErrNoNodes, a *FitError or
// an error in the pod's own constraints when no node fits.
func (a *algorithm) schedule(pi *PodInfo) (result, error) {
	c := a.cache
	c.Lock()
	defer c.Unlock()
	if pi.parseErr != nil {
		return result{}, pi.parseErr
	}
	numAll := len(c.nodeList)
	if numAll == 0 {
		return result{}, ErrNoNodes
	}
	cy := &cycle{c: c, pi: pi}
	cy.ip = c.interPodState(pi)

	want := numFeasibleNodesToFind(a.percentageOfNodesToScore, numAll)
	feasible := make([]*NodeInfo, 0, min(want, 1024))
	var reasons map[string]int
	start := a.nextStart % numAll
	evaluated := 0
	for i := 0; i < numAll && len(feasible) < want; i++ {
		n := c.nodes[c.nodeList[(start+i)%numAll]]
		evaluated++
		if rs := cy.filter(n); rs != nil {
			if reasons == nil {
				reasons = map[string]int{}
			}
			for _, r := range rs {
				reasons[r]++
			}
			continue
		}
		feasible = append(feasible, n)
	}
	a.nextStart = (start + evaluated) % numAll
	if len(feasible) == 0 {
		return result{evaluated: evaluated}, &FitError{NumAllNodes: numAll, Reasons: reasons}
	}
	best := feasible[0]
	if len(feasible) > 1 {
		best = a.pickBest(cy, feasible)
	}
	c.assumePodLocked(pi, best.Name)
	return result{node: best.Name, evaluated: evaluated, feasible: len(feasible)}, nil
}

// pickBest scores the feasible nodes and returns the highest, breaking ties at random so
// that equal nodes share the load.
func (a *algorithm) pickBest(cy *cycle, nodes []*NodeInfo) *NodeInfo {
	scores := cy.score(nodes)
	best, bestScore, ties := 0, scores[0], 1
	for i := 1; i < len(nodes); i++ {
		switch {
		case scores[i] > bestScore:
			best, bestScore, ties = i, scores[i], 1
		case scores[i] == bestScore:
			ties++
			if a.rnd.IntN(ties) == 0 { // reservoir sampling over the ties
				best = i
			}
		}
	}
	return nodes[best]
}
