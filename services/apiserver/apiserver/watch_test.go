package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/codec"
)

// watchN collects n events (or fails after 10s).
func watchN(t *testing.T, c client.Interface, ns string, opts client.WatchOptions, n int) []client.WatchEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []client.WatchEvent
	enough := errors.New("enough")
	err := c.Watch(ctx, kind(t, "pods"), ns, opts, func(ev client.WatchEvent) error {
		got = append(got, ev)
		if len(got) == n {
			return enough
		}
		return nil
	})
	if !errors.Is(err, enough) {
		t.Fatalf("watch ended with %v after %d of %d events", err, len(got), n)
	}
	return got
}

func TestWatchOverGRPCAndREST(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	first, err := env.Client.Create(ctx, newPod("w-0"))
	if err != nil {
		t.Fatal(err)
	}
	rv := first.GetMetadata().ResourceVersion
	p1 := newPod("w-1")
	p1.Metadata.Labels = map[string]string{"app": "x"}
	if _, err := env.Client.Create(ctx, p1); err != nil {
		t.Fatal(err)
	}
	p1.Metadata.Labels["v"] = "2"
	_, err = env.Client.Update(ctx, p1)
	if err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	if _, err := env.Client.Delete(ctx, kind(t, "pods"), "default", "w-1", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}

	for name, c := range map[string]client.Interface{"grpc": env.Client, "rest": client.NewREST(env.HTTPURL, nil)} {
		t.Run(name, func(t *testing.T) {
			got := watchN(t, c, "default", client.WatchOptions{ResourceVersion: rv}, 3)
			want := []string{"ADDED w-1", "MODIFIED w-1", "DELETED w-1"}
			for i, w := range want {
				if g := got[i].Type + " " + got[i].Object.GetMetadata().GetName(); g != w {
					t.Errorf("event %d = %s, want %s", i, g, w)
				}
			}
			if got[1].Object.GetMetadata().GetLabels()["v"] != "2" {
				t.Errorf("MODIFIED event carries the old object: %v", got[1].Object.GetMetadata())
			}
			// Without a resourceVersion the current state comes first.
			initial := watchN(t, c, "default", client.WatchOptions{}, 1)
			if initial[0].Type != "ADDED" || initial[0].Object.GetMetadata().GetName() != "w-0" {
				t.Errorf("initial event = %s %s, want ADDED w-0", initial[0].Type, initial[0].Object.GetMetadata().GetName())
			}
			// Selectors filter events; w-1 starts matching v=2 with its update: Kubernetes
			// sends that as ADDED, not MODIFIED.
			sel := watchN(t, c, "default", client.WatchOptions{ResourceVersion: rv, LabelSelector: "v=2"}, 2)
			if sel[0].Type != "ADDED" || sel[1].Type != "DELETED" {
				t.Errorf("labelSelector v=2 events: %s, %s; want ADDED, DELETED", sel[0].Type, sel[1].Type)
			}
		})
	}

	// A resourceVersion older than the bus keeps: 410 on both paths.
	js := env.JetStream(t)
	stream, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := stream.Info(ctx)
	if err := stream.Purge(ctx, jetstream.WithPurgeSequence(info.State.LastSeq)); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.Create(ctx, newPod("w-2")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]client.Interface{"grpc": env.Client, "rest": client.NewREST(env.HTTPURL, nil)} {
		err := c.Watch(ctx, kind(t, "pods"), "default", client.WatchOptions{ResourceVersion: rv}, func(client.WatchEvent) error { return nil })
		if se := apierrors.FromError(err); se == nil || se.Status.GetCode() != 410 {
			t.Errorf("%s: watch from a purged revision: %v; want 410", name, err)
		}
	}
}

// TestSelectorWatchTransitions: like Kubernetes, a label or field selector watch sees an
// object that starts matching as ADDED, one that stops matching as DELETED (its previous
// content at the event's resourceVersion), MODIFIED while it matches, and nothing otherwise.
func TestSelectorWatchTransitions(t *testing.T) {
	b := startTestBus(t)
	ctx := context.Background()
	c := b.env.Client
	pods := kind(t, "pods")
	start, err := b.env.APIServer.Registry().CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	relabel := func(obj scheme.Object, edit func(md *metav1.ObjectMeta)) scheme.Object {
		t.Helper()
		next := proto.Clone(obj).(scheme.Object)
		edit(scheme.Meta(next))
		out, err := c.Update(ctx, next)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	bind := func(name string) scheme.Object {
		t.Helper()
		if err := c.Bind(ctx, "default", name, "n1"); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(ctx, pods, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	p := newPod("s-1")
	p.Metadata.Labels = map[string]string{"app": "x"}
	created, err := c.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	b.change(bus.Added, created, rvOf(t, created), false)
	enters := relabel(created, func(md *metav1.ObjectMeta) { md.Labels["v"] = "2" })
	b.change(bus.Modified, enters, rvOf(t, enters), true)
	annotated := relabel(enters, func(md *metav1.ObjectMeta) { md.Annotations = map[string]string{"note": "same labels"} })
	b.change(bus.Modified, annotated, rvOf(t, annotated), false) // labels and fields unchanged: no previous value
	leaves := relabel(annotated, func(md *metav1.ObjectMeta) { delete(md.Labels, "v"); md.Labels["w"] = "3" })
	b.change(bus.Modified, leaves, rvOf(t, leaves), true)
	bound := bind("s-1")
	b.change(bus.Modified, bound, rvOf(t, bound), true)
	zero := int64(0)
	if _, err := c.Delete(ctx, pods, "default", "s-1", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deleted, err := b.env.APIServer.Registry().CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b.change(bus.Deleted, bound, deleted, false)
	// A last pod every selector sees, at last: the watches stop there.
	last := newPod("zz")
	last.Metadata.Labels = map[string]string{"app": "x", "v": "2", "w": "3"}
	lastCreated, err := c.Create(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	b.change(bus.Added, lastCreated, rvOf(t, lastCreated), false)
	lastBound := bind("zz")
	b.change(bus.Modified, lastBound, rvOf(t, lastBound), true)

	rv := func(o scheme.Object) string { return o.GetMetadata().GetResourceVersion() }
	cases := []struct {
		labels, fields string
		want           []string // type@resourceVersion of s-1's events
	}{
		{labels: "app=x", want: []string{"ADDED@" + rv(created), "MODIFIED@" + rv(enters), "MODIFIED@" + rv(annotated),
			"MODIFIED@" + rv(leaves), "MODIFIED@" + rv(bound), "DELETED@" + strconv.FormatInt(deleted, 10)}},
		{labels: "v=2", want: []string{"ADDED@" + rv(enters), "MODIFIED@" + rv(annotated), "DELETED@" + rv(leaves)}},
		{labels: "w=3", want: []string{"ADDED@" + rv(leaves), "MODIFIED@" + rv(bound), "DELETED@" + strconv.FormatInt(deleted, 10)}},
		{fields: "spec.nodeName=n1", want: []string{"ADDED@" + rv(bound), "DELETED@" + strconv.FormatInt(deleted, 10)}},
		{labels: "app=x", fields: "spec.nodeName=", want: []string{"ADDED@" + rv(created), "MODIFIED@" + rv(enters),
			"MODIFIED@" + rv(annotated), "MODIFIED@" + rv(leaves), "DELETED@" + rv(bound)}},
	}
	for name, cl := range map[string]client.Interface{"grpc": c, "rest": client.NewREST(b.env.HTTPURL, nil)} {
		for _, tc := range cases {
			t.Run(name+"/"+tc.labels+","+tc.fields, func(t *testing.T) {
				var got []string
				var left scheme.Object
				wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				done := errors.New("done")
				err := cl.Watch(wctx, pods, "default", client.WatchOptions{ResourceVersion: strconv.FormatInt(start, 10),
					LabelSelector: tc.labels, FieldSelector: tc.fields}, func(ev client.WatchEvent) error {
					if ev.Object.GetMetadata().GetName() == "zz" {
						if rv(ev.Object) == rv(lastBound) {
							return done
						}
						return nil
					}
					got = append(got, ev.Type+"@"+rv(ev.Object))
					if tc.labels == "v=2" && ev.Type == "DELETED" {
						left = ev.Object
					}
					return nil
				})
				if !errors.Is(err, done) && !(tc.fields == "spec.nodeName=" && err == nil) {
					t.Fatalf("watch ended with %v after %q", err, got)
				}
				if !slices.Equal(got, tc.want) {
					t.Errorf("events %q; want %q", got, tc.want)
				}
				// Leaving the selection: the previous content, at the event's resourceVersion.
				if left != nil && (left.GetMetadata().GetLabels()["v"] != "2" || rv(left) != rv(leaves)) {
					t.Errorf("DELETED on leaving carries labels %v at %s; want v=2 at %s",
						left.GetMetadata().GetLabels(), rv(left), rv(leaves))
				}
			})
		}
	}
}

// TestOversizeEventsAreReadFromEtcd: for a change the bus could not carry, the watch sends the
// object as it was at the event's revision, read from etcd (for a delete, its last state).
func TestOversizeEventsAreReadFromEtcd(t *testing.T) {
	b := startTestBus(t)
	ctx := context.Background()
	c := b.env.Client
	pods := kind(t, "pods")
	start, err := b.env.APIServer.Registry().CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	created, err := c.Create(ctx, newPod("big"))
	if err != nil {
		t.Fatal(err)
	}
	var revs []int64
	obj := created
	revs = append(revs, rvOf(t, obj))
	for _, v := range []string{"2", "3"} {
		next := proto.Clone(obj).(*corev1.Pod)
		next.Metadata.Labels = map[string]string{"v": v}
		if obj, err = c.Update(ctx, next); err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rvOf(t, obj))
	}
	zero := int64(0)
	if _, err := c.Delete(ctx, pods, "default", "big", client.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deleted, err := b.env.APIServer.Registry().CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	revs = append(revs, deleted)
	// Published after all of it: the watch must read each revision, not the latest state.
	for i, typ := range []bus.EventType{bus.Added, bus.Modified, bus.Modified, bus.Deleted} {
		b.oversize(typ, pods, "default", "big", revs[i])
	}
	r := func(i int) string { return strconv.FormatInt(revs[i], 10) }
	for name, cl := range map[string]client.Interface{"grpc": c, "rest": client.NewREST(b.env.HTTPURL, nil)} {
		t.Run(name, func(t *testing.T) {
			opts := client.WatchOptions{ResourceVersion: strconv.FormatInt(start, 10)}
			got := watchN(t, cl, "default", opts, 4)
			want := []string{"ADDED@" + r(0) + " v=", "MODIFIED@" + r(1) + " v=2", "MODIFIED@" + r(2) + " v=3", "DELETED@" + r(3) + " v=3"}
			for i, ev := range got {
				md := ev.Object.GetMetadata()
				if g := ev.Type + "@" + md.GetResourceVersion() + " v=" + md.GetLabels()["v"]; g != want[i] {
					t.Errorf("event %d: %s; want %s", i, g, want[i])
				}
				if p, ok := ev.Object.(*corev1.Pod); !ok || len(p.GetSpec().GetContainers()) != 1 || md.GetUid() != created.GetMetadata().GetUid() {
					t.Errorf("event %d carries an incomplete object: %v", i, ev.Object)
				}
			}
			opts.LabelSelector = "v=2"
			sel := watchN(t, cl, "default", opts, 2)
			if g := sel[0].Type + "@" + sel[0].Object.GetMetadata().GetResourceVersion(); g != "ADDED@"+r(1) {
				t.Errorf("v=2 event 0: %s; want ADDED@%s", g, r(1))
			}
			left := sel[1].Object.GetMetadata()
			if g := sel[1].Type + "@" + left.GetResourceVersion() + " v=" + left.GetLabels()["v"]; g != "DELETED@"+r(2)+" v=2" {
				t.Errorf("v=2 event 1: %s; want DELETED@%s v=2 (the previous content)", g, r(2))
			}
		})
	}
}

// TestWatchEndsWithGoneWhenTheBusStopsCoveringIt: a watch that loses changes mid-stream (here
// a compaction gap) ends as Kubernetes ends it: REST with an ERROR event holding the 410
// Expired Status, gRPC with the 410 Status.
func TestWatchEndsWithGoneWhenTheBusStopsCoveringIt(t *testing.T) {
	b := startTestBus(t)
	ctx := context.Background()
	a, err := b.env.Client.Create(ctx, newPod("a"))
	if err != nil {
		t.Fatal(err)
	}
	b.change(bus.Added, a, rvOf(t, a), false)
	from := strconv.FormatInt(rvOf(t, a)-1, 10)

	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		b.env.HTTPURL+"/api/v1/namespaces/default/pods?watch=true&resourceVersion="+from, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: %d", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 4<<20)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), `{"type":"ADDED"`) {
		t.Fatalf("first line %q (%v); want ADDED a", lines.Text(), lines.Err())
	}
	grpcDone := make(chan error, 1)
	grpcStarted := make(chan struct{})
	go func() {
		grpcDone <- b.env.Client.Watch(ctx, kind(t, "pods"), "default", client.WatchOptions{ResourceVersion: from},
			func(client.WatchEvent) error { close(grpcStarted); return nil })
	}()
	select {
	case <-grpcStarted:
	case err := <-grpcDone:
		t.Fatalf("gRPC watch ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gRPC watch: no event")
	}

	b.gap(rvOf(t, a) + 10) // changes after a, up to the gap's end, are lost

	if !lines.Scan() {
		t.Fatalf("REST watch ended without an ERROR event: %v", lines.Err())
	}
	var ev struct {
		Type   string         `json:"type"`
		Object map[string]any `json:"object"`
	}
	if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
		t.Fatalf("line %q: %v", lines.Text(), err)
	}
	if ev.Type != "ERROR" || ev.Object["kind"] != "Status" || ev.Object["code"] != float64(410) || ev.Object["reason"] != "Expired" {
		t.Errorf("REST watch's last event %s; want ERROR with the 410 Expired Status", lines.Text())
	}
	if lines.Scan() {
		t.Errorf("REST watch went on after its ERROR event: %q", lines.Text())
	}
	select {
	case err := <-grpcDone:
		st, _ := status.FromError(err)
		if se := apierrors.FromError(err); st.Code() != codes.OutOfRange || se == nil || se.Status.GetCode() != 410 ||
			se.Status.GetReason() != apierrors.ReasonExpired {
			t.Errorf("gRPC watch ended with %v (code %v); want OutOfRange with the 410 Expired Status", err, st.Code())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gRPC watch did not end")
	}
	// The REST client reports the ERROR event as the Status.
	err = client.NewREST(b.env.HTTPURL, nil).Watch(ctx, kind(t, "pods"), "default", client.WatchOptions{ResourceVersion: from},
		func(client.WatchEvent) error { return nil })
	if !apierrors.IsGone(err) {
		t.Errorf("REST client watch from before the gap: %v; want 410", err)
	}
}

// TestWatchAtFutureResourceVersion: a watch from a resourceVersion etcd has not reached waits
// briefly for it, then answers Kubernetes' "Too large resource version" (504 Timeout, cause
// ResourceVersionTooLarge, retry after 1 s); one the waiting sees arrive streams normally.
func TestWatchAtFutureResourceVersion(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	cur, err := env.APIServer.Registry().CurrentRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	future := strconv.FormatInt(cur+1000, 10)
	check := func(name string, se *apierrors.StatusError) {
		t.Helper()
		st := se.Status
		if st.GetCode() != 504 || st.GetReason() != apierrors.ReasonTimeout || st.GetDetails().GetRetryAfterSeconds() != 1 ||
			len(st.GetDetails().GetCauses()) != 1 || st.GetDetails().GetCauses()[0].GetReason() != "ResourceVersionTooLarge" ||
			!strings.Contains(st.GetMessage(), "Too large resource version") {
			t.Errorf("%s: %v; want 504 Timeout, cause ResourceVersionTooLarge, retryAfterSeconds 1", name, st)
		}
	}
	// Bounded, so that a watch that hangs instead fails the test.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(wctx, http.MethodGet,
		env.HTTPURL+"/api/v1/namespaces/default/pods?watch=true&resourceVersion="+future, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 504 {
		t.Errorf("REST: %d %s (%v); want 504", resp.StatusCode, raw, err)
	}
	st := &metav1.Status{}
	if err := codec.Unmarshal(raw, st); err != nil {
		t.Fatalf("REST body %q: %v", raw, err)
	}
	check("REST", &apierrors.StatusError{Status: st})
	err = env.Client.Watch(wctx, kind(t, "pods"), "default", client.WatchOptions{ResourceVersion: future},
		func(client.WatchEvent) error { return nil })
	if s, _ := status.FromError(err); s.Code() != codes.DeadlineExceeded {
		t.Errorf("gRPC code %v; want DeadlineExceeded", s.Code())
	}
	check("gRPC", apierrors.FromError(err))

	// A revision reached while the watch waits is fine: it streams what comes after it.
	f0, err := env.Client.Create(ctx, newPod("f-0"))
	if err != nil {
		t.Fatal(err)
	}
	next := strconv.FormatInt(rvOf(t, f0)+1, 10)
	got := make(chan []client.WatchEvent, 1)
	go func() {
		var evs []client.WatchEvent
		enough := errors.New("enough")
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		err := env.Client.Watch(wctx, kind(t, "pods"), "default", client.WatchOptions{ResourceVersion: next},
			func(ev client.WatchEvent) error { evs = append(evs, ev); return enough })
		if !errors.Is(err, enough) {
			t.Errorf("watch at the next revision: %v", err)
		}
		got <- evs
	}()
	time.Sleep(500 * time.Millisecond) // let the watch wait for the revision
	for _, name := range []string{"f-1", "f-2"} {
		if _, err := env.Client.Create(ctx, newPod(name)); err != nil {
			t.Fatal(err)
		}
	}
	if evs := <-got; len(evs) != 1 || evs[0].Type != "ADDED" || evs[0].Object.GetMetadata().GetName() != "f-2" {
		t.Errorf("watch from the next revision got %v; want ADDED f-2 (f-1 is at that revision)", evs)
	}
}

// TestConcurrentWatches: 200 REST watches opened at once all start (200) and all receive the
// change that follows.
func TestConcurrentWatches(t *testing.T) {
	env := testenv.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const n = 200
	starts := make(chan string, n)
	seen := make(chan error, n)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	for range n {
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.HTTPURL+"/api/v1/namespaces/default/pods?watch=true", nil)
			if err != nil {
				starts <- err.Error()
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				starts <- err.Error()
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				data, _ := io.ReadAll(resp.Body)
				starts <- fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(data))
				return
			}
			starts <- "200"
			lines := bufio.NewScanner(resp.Body)
			lines.Buffer(nil, 4<<20)
			for lines.Scan() {
				if strings.Contains(lines.Text(), `"name":"after"`) {
					seen <- nil
					return
				}
			}
			seen <- fmt.Errorf("watch ended without the event: %v", lines.Err())
		}()
	}
	failed := map[string]int{}
	for range n {
		if c := <-starts; c != "200" {
			failed[c]++
		}
	}
	if len(failed) > 0 {
		t.Fatalf("of %d concurrent watches, these did not start: %v", n, failed)
	}
	if _, err := env.Client.Create(ctx, newPod("after")); err != nil {
		t.Fatal(err)
	}
	missed := 0
	for range n {
		select {
		case err := <-seen:
			if err != nil {
				missed++
				t.Log(err)
			}
		case <-ctx.Done():
			t.Fatalf("watches still waiting for the event: %v", ctx.Err())
		}
	}
	if missed > 0 {
		t.Errorf("%d of %d watches missed the event", missed, n)
	}
}

// TestWatchesShareOneLiveFeed: many watches of one kind in one namespace, over gRPC and REST,
// cost the server one live feed and one decode per change, and each still gets every change
// in order.
func TestWatchesShareOneLiveFeed(t *testing.T) {
	env := testenv.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := env.Client.Create(ctx, newPod("feed-0"))
	if err != nil {
		t.Fatal(err)
	}
	rv := first.GetMetadata().GetResourceVersion()
	const watches, changes = 20, 5
	results := make(chan string, watches)
	for i := range watches {
		var c client.Interface = env.Client
		if i%2 == 1 {
			c = client.NewREST(env.HTTPURL, nil)
		}
		// Each watch stays open until the test ends, so that none stops the feed (its last
		// reader gone) before a slower one joins it.
		go func() {
			var names []string
			err := c.Watch(ctx, kind(t, "pods"), "default", client.WatchOptions{ResourceVersion: rv}, func(ev client.WatchEvent) error {
				names = append(names, string(ev.Type)+" "+ev.Object.GetMetadata().GetName())
				if len(names) == changes {
					results <- strings.Join(names, ",")
				}
				return nil
			})
			if len(names) < changes {
				results <- strings.Join(append(names, fmt.Sprintf("ended: %v", err)), ",")
			}
		}()
	}
	var want []string
	for i := 1; i <= changes; i++ {
		if _, err := env.Client.Create(ctx, newPod(fmt.Sprintf("feed-%d", i))); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("ADDED feed-%d", i))
	}
	for range watches {
		if got := <-results; got != strings.Join(want, ",") {
			t.Errorf("a watch got %s; want %s", got, strings.Join(want, ","))
		}
	}
	value := func(name string) int { return metricValue(t, env, name) }
	if feeds := value("skiff_apiserver_watch_feeds_started_total"); feeds != 1 {
		t.Errorf("%d watches of pods in default started %d live feeds; want 1 shared", watches, feeds)
	}
	if decodes := value("skiff_apiserver_watch_live_decodes_total"); decodes > changes {
		t.Errorf("%d changes seen by %d watches were decoded %d times; want at most once each", changes, watches, decodes)
	}
	// The REST half sends each change as JSON encoded once for all of them.
	encodes, reused := value("skiff_apiserver_watch_encodes_total"), value("skiff_apiserver_watch_encodes_reused_total")
	if rest := watches / 2; encodes > changes || encodes+reused != rest*changes {
		t.Errorf("%d REST watches sent %d changes with %d encodings and %d reused; want at most %d encodings, %d sends",
			rest, changes, encodes, reused, changes, rest*changes)
	}
}

// TestNodeWatchReadsOnlyItsNode: a pod watch with fieldSelector spec.nodeName=NODE (a
// kubelet's) reads the node's bus subjects, so the server decodes that node's pod changes and
// no others, and the watch still sees its pods' whole lives (bind: ADDED, then MODIFIED and
// DELETED), in every namespace or in one.
func TestNodeWatchReadsOnlyItsNode(t *testing.T) {
	env := testenv.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, pods := env.Client, kind(t, "pods")
	if _, err := c.Create(ctx, &corev1.Namespace{Metadata: &metav1.ObjectMeta{Name: "other"}}); err != nil {
		t.Fatal(err)
	}
	start, err := c.Create(ctx, newPod("before"))
	if err != nil {
		t.Fatal(err)
	}
	rv := start.GetMetadata().GetResourceVersion()
	// Each watch says when it has seen pod "sync" on node-a: from then on its feed is live, and
	// what follows is decoded as it arrives.
	synced := make(chan struct{}, 2)
	watch := func(ns string, want int) chan string {
		out := make(chan string, 1)
		go func() {
			var got []string
			enough := errors.New("enough")
			err := c.Watch(ctx, pods, ns, client.WatchOptions{ResourceVersion: rv, FieldSelector: "spec.nodeName=node-a"}, func(ev client.WatchEvent) error {
				md := ev.Object.GetMetadata()
				if md.GetName() == "sync" {
					synced <- struct{}{}
					return nil
				}
				got = append(got, string(ev.Type)+" "+md.GetNamespace()+"/"+md.GetName())
				if len(got) == want {
					return enough
				}
				return nil
			})
			if !errors.Is(err, enough) {
				got = append(got, fmt.Sprintf("ended: %v", err))
			}
			out <- strings.Join(got, ",")
		}()
		return out
	}
	all, inDefault := watch("", 4), watch("default", 3)
	if _, err := c.Create(ctx, newPod("sync")); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(ctx, "default", "sync", "node-a"); err != nil {
		t.Fatal(err)
	}
	<-synced
	<-synced
	// Pods of node-b: many changes the node-a watches must not cost a decode.
	for i := range 10 {
		name := fmt.Sprintf("b-%d", i)
		if _, err := c.Create(ctx, newPod(name)); err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(ctx, "default", name, "node-b"); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"default", "other"} {
		p := newPod("a")
		p.Metadata.Namespace = ns
		if _, err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(ctx, ns, "a", "node-a"); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := c.Get(ctx, pods, "default", "a")
	got.GetMetadata().Labels = map[string]string{"seen": "yes"}
	if _, err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, pods, "default", "a", client.DeleteOptions{GracePeriodSeconds: proto.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	if g, want := <-all, "ADDED default/a,ADDED other/a,MODIFIED default/a,DELETED default/a"; g != want {
		t.Errorf("node-a watch of all namespaces got %s; want %s", g, want)
	}
	if g, want := <-inDefault, "ADDED default/a,MODIFIED default/a,DELETED default/a"; g != want {
		t.Errorf("node-a watch of default got %s; want %s", g, want)
	}
	// node-a's messages: the sync, two binds, the update, the delete (at most, once each).
	if n := metricValue(t, env, "skiff_apiserver_watch_live_decodes_total"); n > 5 {
		t.Errorf("the node-a watches cost %d live decodes; want at most node-a's 5 changes (not node-b's 20 too)", n)
	}
}

// TestConcurrentNodeListsShareReads: node agents starting together each list their node's
// pods; the lists share etcd reads of the pods and each still gets exactly its node's pods.
func TestConcurrentNodeListsShareReads(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	c, pods := env.Client, kind(t, "pods")
	for i := range 20 {
		name := fmt.Sprintf("np-%02d", i)
		if _, err := c.Create(ctx, newPod(name)); err != nil {
			t.Fatal(err)
		}
		if err := c.Bind(ctx, "default", name, fmt.Sprintf("node-%d", i%4)); err != nil {
			t.Fatal(err)
		}
	}
	metric := func(name string) int { return metricValue(t, env, name) }
	shared0 := metric("skiff_apiserver_list_reads_shared_total")
	evaluated0 := metric("skiff_apiserver_list_evaluated_objects_total")
	const agents = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range agents {
		wg.Go(func() {
			<-start
			node := fmt.Sprintf("node-%d", i%4)
			// With a limit, as informers list: a selective list shares the whole read too.
			l, err := c.List(ctx, pods, "", client.ListOptions{FieldSelector: "spec.nodeName=" + node, Limit: 500})
			if err != nil {
				t.Errorf("list %s: %v", node, err)
				return
			}
			var names []string
			for _, p := range l.Items {
				if p.(*corev1.Pod).GetSpec().GetNodeName() != node {
					t.Errorf("list of %s holds %s on %s", node, p.GetMetadata().GetName(), p.(*corev1.Pod).GetSpec().GetNodeName())
				}
				names = append(names, p.GetMetadata().GetName())
			}
			if len(names) != 5 {
				t.Errorf("list of %s: %v; want its 5 pods", node, names)
			}
		})
	}
	close(start)
	wg.Wait()
	if shared := metric("skiff_apiserver_list_reads_shared_total") - shared0; shared == 0 {
		t.Errorf("%d concurrent node lists shared no read", agents)
	}
	// Each list examined only its node's 5 pods (the read's node index), not all 20: a
	// thousand kubelets starting together must not each filter every pod of the cluster.
	if evaluated := metric("skiff_apiserver_list_evaluated_objects_total") - evaluated0; evaluated != agents*5 {
		t.Errorf("%d node lists examined %d stored pods; want %d (5 each)", agents, evaluated, agents*5)
	}
	// A node's list in pages smaller than its pods: the first page from the index, the rest
	// at its revision; every pod once, in order.
	var paged []string
	opts := client.ListOptions{FieldSelector: "spec.nodeName=node-1", Limit: 2}
	for pages := 0; ; pages++ {
		l, err := c.List(ctx, pods, "", opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) > 2 || pages > 3 {
			t.Fatalf("page %d of node-1's pods holds %d pods (limit 2)", pages, len(l.Items))
		}
		for _, p := range l.Items {
			paged = append(paged, p.GetMetadata().GetName())
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if want := []string{"np-01", "np-05", "np-09", "np-13", "np-17"}; !slices.Equal(paged, want) {
		t.Errorf("node-1's pods in pages of 2: %v; want %v", paged, want)
	}
}

// metricValue reads one unlabelled series from the apiserver's /metrics.
func metricValue(t *testing.T, env *testenv.Env, name string) int {
	t.Helper()
	code, _, body := httpDo(t, "GET", env.HTTPURL+"/metrics", "", "", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	t.Fatalf("/metrics lacks %s", name)
	return 0
}
