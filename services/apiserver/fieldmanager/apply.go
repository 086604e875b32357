package fieldmanager

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/skiff-project/skiff/pkg/apis/schema"
)

// Request says who writes and where.
type Request struct {
	Manager     string
	APIVersion  string
	Subresource string // "", "status", "scale"
	Time        string // RFC 3339, for the entries this write touches
	Type        protoreflect.MessageDescriptor
}

// Update records a non-apply write that turned old into new (old is nil for a create): the
// writer's Update entry gains every field whose value the write set or changed, which no
// other manager owns any more; fields the write removed leave every entry. An unchanged object
// keeps its entries as they are (changed is false).
func Update(old, new map[string]any, entries []Entry, req Request) (out []Entry, changed bool) {
	return UpdateSet(old, new, ObjectSet(new, req.Type), entries, req)
}

// UpdateSet is Update given the new object's field set (ObjectSet of new, or MessageSet of the
// message it came from). For a create new is not read and may be nil.
func UpdateSet(old, new map[string]any, set Set, entries []Entry, req Request) (out []Entry, changed bool) {
	newSet := Scope(set, req.Subresource)
	if old == nil && !anyInScope(entries, req.Subresource) {
		// A create that nobody else owns anything of: the writer's new entry owns the whole
		// set, which is what adding each of its leaves to an empty set rebuilds.
		if newSet.Empty() {
			return entries, false
		}
		out = make([]Entry, 0, len(entries)+1)
		for _, e := range entries {
			e.Fields = cloneSet(e.Fields)
			out = append(out, e)
		}
		out = append(out, Entry{Manager: req.Manager, Operation: OperationUpdate, APIVersion: req.APIVersion,
			Subresource: req.Subresource, Time: req.Time, Fields: newSet})
		return dropEmpty(out), true
	}
	return update(old, new, newSet, entries, req)
}

// update is the general path of UpdateSet, for newSet already scoped.
func update(old, new map[string]any, newSet Set, entries []Entry, req Request) (out []Entry, changed bool) {
	var written []Path
	if old == nil {
		written = newSet.Leaves() // a create writes everything it sets
	} else {
		differences(newSet, old, new, true, false, nil, &written)
	}
	removed := false
	for _, e := range entries {
		if !sameScope(e.Subresource, req.Subresource) {
			continue
		}
		for _, p := range e.Fields.Leaves() {
			if !newSet.Has(p) {
				removed = true
			}
		}
	}
	if len(written) == 0 && !removed {
		return entries, false
	}
	out = make([]Entry, 0, len(entries)+1)
	mine := -1
	for _, e := range entries {
		e.Fields = cloneSet(e.Fields)
		if sameScope(e.Subresource, req.Subresource) {
			for _, p := range e.Fields.Leaves() {
				if !newSet.Has(p) {
					e.Fields.Remove(p)
				}
			}
			for _, p := range written {
				e.Fields.Remove(p)
			}
		}
		if e.Manager == req.Manager && e.Operation == OperationUpdate && e.Subresource == req.Subresource &&
			e.APIVersion == req.APIVersion {
			mine = len(out)
		}
		out = append(out, e)
	}
	if len(written) > 0 {
		if mine < 0 {
			out = append(out, Entry{Manager: req.Manager, Operation: OperationUpdate, APIVersion: req.APIVersion,
				Subresource: req.Subresource, Fields: Set{}})
			mine = len(out) - 1
		}
		for _, p := range written {
			out[mine].Fields.Add(p)
		}
		out[mine].Time = req.Time
	}
	return dropEmpty(out), true
}

func anyInScope(entries []Entry, sub string) bool {
	for _, e := range entries {
		if sameScope(e.Subresource, sub) {
			return true
		}
	}
	return false
}

// Conflict is a field another manager owns with a different value than an apply asks for.
type Conflict struct {
	Manager    string
	Operation  string
	APIVersion string
	Time       string
	Path       Path
}

// ConflictError lists an apply's conflicts.
type ConflictError struct {
	Conflicts []Conflict
}

// Error is Kubernetes' message: `Apply failed with 1 conflict: conflict with "kubectl-edit"
// using apps/v1: .spec.replicas`.
func (e *ConflictError) Error() string {
	n := len(e.Conflicts)
	noun := "conflict"
	if n != 1 {
		noun = "conflicts"
	}
	var parts []string
	for _, c := range e.Conflicts {
		parts = append(parts, c.Describe()+": "+c.Path.String())
	}
	return fmt.Sprintf("Apply failed with %d %s: %s", n, noun, strings.Join(parts, "\n"))
}

// Describe names the other manager as Kubernetes does.
func (c Conflict) Describe() string {
	if c.Operation == OperationUpdate {
		return fmt.Sprintf("conflict with %q using %s", c.Manager, c.APIVersion)
	}
	return fmt.Sprintf("conflict with %q", c.Manager)
}

// Apply merges the applied configuration into live (which it may modify) for req.Manager and
// returns the new object and entries. Fields the manager applied before and applies no more
// are removed unless another manager owns them. A field another manager owns with another
// value is a conflict: with force the applier takes it over, otherwise Apply returns a
// *ConflictError and changes nothing.
func Apply(live, applied map[string]any, entries []Entry, req Request, force bool) (map[string]any, []Entry, error) {
	appliedSet := Scope(ObjectSet(applied, req.Type), req.Subresource)
	mine := -1
	for i, e := range entries {
		if e.Manager == req.Manager && e.Operation == OperationApply && e.Subresource == req.Subresource {
			mine = i
		}
	}
	var conflicts []Conflict
	for i, e := range entries {
		if i == mine || !sameScope(e.Subresource, req.Subresource) {
			continue
		}
		// The fields both own whose live value differs from the applied one.
		var differ []Path
		differences(intersect(e.Fields, appliedSet), live, applied, true, true, nil, &differ)
		for _, p := range differ {
			conflicts = append(conflicts, Conflict{Manager: e.Manager, Operation: e.Operation,
				APIVersion: e.APIVersion, Time: e.Time, Path: p})
		}
	}
	sort.SliceStable(conflicts, func(i, j int) bool {
		if conflicts[i].Manager != conflicts[j].Manager {
			return conflicts[i].Manager < conflicts[j].Manager
		}
		return conflicts[i].Path.String() < conflicts[j].Path.String()
	})
	if len(conflicts) > 0 && !force {
		return nil, nil, &ConflictError{Conflicts: conflicts}
	}
	out := make([]Entry, 0, len(entries)+1)
	for i, e := range entries {
		e.Fields = cloneSet(e.Fields)
		if i != mine {
			for _, c := range conflicts {
				if c.Manager == e.Manager && c.Operation == e.Operation {
					e.Fields.Remove(c.Path)
				}
			}
		}
		out = append(out, e)
	}
	// What the manager no longer applies goes, unless someone else owns it too.
	if mine >= 0 {
		for _, p := range entries[mine].Fields.Leaves() {
			if appliedSet.Has(p) || ownedByOthers(out, mine, p, req.Subresource) {
				continue
			}
			removeAt(live, p)
		}
		out[mine].Fields = appliedSet
		out[mine].Time = req.Time
		out[mine].APIVersion = req.APIVersion
	} else {
		out = append(out, Entry{Manager: req.Manager, Operation: OperationApply, APIVersion: req.APIVersion,
			Time: req.Time, Subresource: req.Subresource, Fields: appliedSet})
	}
	merged := mergeApplied(live, applied, req.Type)
	return merged, dropEmpty(out), nil
}

func ownedByOthers(entries []Entry, except int, p Path, sub string) bool {
	for i, e := range entries {
		if i != except && sameScope(e.Subresource, sub) && e.Fields.Has(p) {
			return true
		}
	}
	return false
}

// mergeApplied merges an applied configuration into live: objects field by field, map lists
// item by item by their keys, sets by value; atomic lists and scalars are replaced.
func mergeApplied(live, applied map[string]any, md protoreflect.MessageDescriptor) map[string]any {
	if live == nil {
		live = map[string]any{}
	}
	for k, av := range applied {
		fd := fieldOf(md, k)
		switch a := av.(type) {
		case map[string]any:
			l, ok := live[k].(map[string]any)
			if !ok || (fd != nil && !fd.IsMap() && (fd.Message() == nil || isOpaque(fd.Message()))) {
				live[k] = a
				continue
			}
			var sub protoreflect.MessageDescriptor
			if fd != nil && !fd.IsMap() {
				sub = fd.Message()
			}
			live[k] = mergeApplied(l, a, sub)
		case []any:
			if fd == nil || !fd.IsList() {
				live[k] = a
				continue
			}
			l, _ := live[k].([]any)
			info := schema.List(fd)
			switch {
			case info.Type == schema.Map && fd.Message() != nil:
				for _, item := range a {
					im, ok := item.(map[string]any)
					if !ok {
						continue
					}
					idx := findItem(l, "k:"+itemKey(im, info.Keys))
					if idx < 0 {
						l = append(l, im)
						continue
					}
					lm, _ := l[idx].(map[string]any)
					l[idx] = mergeApplied(lm, im, fd.Message())
				}
				live[k] = l
			case info.Type == schema.Set:
				for _, item := range a {
					found := false
					for _, v := range l {
						if jsonEqual(v, item) {
							found = true
						}
					}
					if !found {
						l = append(l, item)
					}
				}
				live[k] = l
			default:
				live[k] = a
			}
		default:
			live[k] = av
		}
	}
	return live
}

// sameScope reports whether entries of two subresources manage the same fields: scale
// writes manage the main resource's spec.replicas.
func sameScope(a, b string) bool {
	return (a == "status") == (b == "status")
}

func cloneSet(s Set) Set {
	out := make(Set, len(s))
	for k, v := range s {
		out[k] = cloneSet(v)
	}
	return out
}

func dropEmpty(entries []Entry) []Entry {
	out := entries[:0]
	for _, e := range entries {
		if !e.Fields.Empty() {
			out = append(out, e)
		}
	}
	return out
}
