package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/informer"
)

// change is one change of one object: as etcd committed it, or as an informer handler was
// told about it.
type change struct {
	key string // namespace/name
	typ string // ADDED, MODIFIED, DELETED
	rev int64
}

func (c change) String() string { return c.typ + "@" + strconv.FormatInt(c.rev, 10) }

// recorder keeps every handler call of an informer, in call order.
type recorder struct {
	mu      sync.Mutex
	changes []change
}

func (r *recorder) add(typ string, obj scheme.Object) {
	rv, _ := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	r.mu.Lock()
	r.changes = append(r.changes, change{key: informer.KeyOf(obj), typ: typ, rev: rv})
	r.mu.Unlock()
}

func (r *recorder) handlers() informer.HandlerFuncs {
	return informer.HandlerFuncs{
		AddFunc:    func(obj scheme.Object) { r.add("ADDED", obj) },
		UpdateFunc: func(_, obj scheme.Object) { r.add("MODIFIED", obj) },
		DeleteFunc: func(obj scheme.Object) { r.add("DELETED", obj) },
	}
}

// snapshot copies what was recorded so far.
func (r *recorder) snapshot() []change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes)
}

// etcdHistory reads every change under prefix (e.g. "/registry/pods/") from revision from up
// to and including revision until, straight from etcd's MVCC history: the truth. Keys become
// "namespace/name".
func etcdHistory(ctx context.Context, cli *clientv3.Client, prefix string, from, until int64) ([]change, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out []change
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			return nil, fmt.Errorf("etcd history from %d: %w", from, err)
		}
		reached := false
		for _, ev := range resp.Events {
			rev := ev.Kv.ModRevision
			if rev > until {
				reached = true
				break
			}
			typ := "MODIFIED"
			switch {
			case ev.Type == mvccpb.DELETE:
				typ = "DELETED"
			case ev.Kv.CreateRevision == ev.Kv.ModRevision:
				typ = "ADDED"
			}
			out = append(out, change{key: strings.TrimPrefix(string(ev.Kv.Key), prefix), typ: typ, rev: rev})
			reached = reached || rev == until
		}
		// Events of one revision arrive in one response, so stopping after the response that
		// reached until keeps every change of that revision.
		if reached {
			return out, nil
		}
	}
	return nil, fmt.Errorf("etcd history from %d: watch ended before revision %d: %w", from, until, ctx.Err())
}

// verdict compares what an informer's handlers were told with etcd's history.
type verdict struct {
	events     int // changes in etcd's history
	objects    int // distinct keys in etcd's history
	lost       int // committed changes no handler call reported
	duplicated int // handler calls repeating a change already reported
	reordered  int // handler calls reporting a revision older than one reported before
	phantom    int // handler calls for a change etcd never committed (or with the wrong type)
	mismatches []string
}

func (v verdict) ok() bool {
	return v.lost == 0 && v.duplicated == 0 && v.reordered == 0 && v.phantom == 0 && len(v.mismatches) == 0
}

// compare checks, per object, that the informer reported exactly etcd's sequence of changes
// (same types, same revisions, same order), and across objects that revisions never went
// backwards: the handlers are promised the changes in the order they happened.
func compare(truth, seen []change) verdict {
	var v verdict
	want := map[string][]change{}
	for _, c := range truth {
		want[c.key] = append(want[c.key], c)
	}
	got := map[string][]change{}
	for _, c := range seen {
		got[c.key] = append(got[c.key], c)
	}
	v.events, v.objects = len(truth), len(want)

	type keyRev struct {
		key string
		rev int64
	}
	committed := map[keyRev]string{}
	for _, c := range truth {
		committed[keyRev{c.key, c.rev}] = c.typ
	}
	reported := map[keyRev]bool{}
	var maxRev int64
	for _, c := range seen {
		kr := keyRev{c.key, c.rev}
		if reported[kr] {
			v.duplicated++
			continue
		}
		reported[kr] = true
		if typ, ok := committed[kr]; !ok || typ != c.typ {
			v.phantom++
		}
		if c.rev < maxRev {
			v.reordered++
		}
		maxRev = max(maxRev, c.rev)
	}
	for kr := range committed {
		if !reported[kr] {
			v.lost++
		}
	}

	keys := make([]string, 0, len(want)+len(got))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Equal(want[k], got[k]) {
			v.mismatches = append(v.mismatches, fmt.Sprintf("%s:\n\tetcd:     %s\n\treported: %s",
				k, brief(want[k]), brief(got[k])))
		}
	}
	return v
}

// brief prints a sequence of changes, eliding the middle of long ones.
func brief(cs []change) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, c.String())
	}
	if len(parts) > 24 {
		parts = append(append(parts[:10:10], fmt.Sprintf("... (%d more) ...", len(parts)-20)), parts[len(parts)-10:]...)
	}
	if len(parts) == 0 {
		return "(nothing)"
	}
	return strings.Join(parts, " ")
}

// commas formats n with thousands separators, for the summary line.
func commas(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
