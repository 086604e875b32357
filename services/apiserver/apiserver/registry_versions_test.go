package apiserver_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"testing"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/client"
)

func regNames(l *client.List) []string {
	var out []string
	for _, it := range l.Items {
		out = append(out, it.GetMetadata().GetName()+"="+it.(*corev1.Pod).GetSpec().GetContainers()[0].GetImage())
	}
	sort.Strings(out)
	return out
}

func regIsTooLargeRV(t *testing.T, err error) bool {
	t.Helper()
	se := apierrors.FromError(err)
	if se == nil {
		return false
	}
	s := se.Status
	return s.GetCode() == http.StatusGatewayTimeout && s.GetReason() == apierrors.ReasonTimeout &&
		s.GetDetails().GetRetryAfterSeconds() == 1 && apierrors.IsTooLargeResourceVersion(err)
}

// Get and list take their own resourceVersion (and a list its resourceVersionMatch) with
// Kubernetes' meaning; before, the value was parsed into the delete options and ignored, so
// a read at a version was impossible and a future version answered 500.
func TestReadsAtResourceVersions(t *testing.T) {
	env := testenv.Start(t)
	ctx := context.Background()
	pods := kind(t, "pods")
	a, err := env.Client.Create(ctx, newPod("a"))
	if err != nil {
		t.Fatal(err)
	}
	then := a.GetMetadata().ResourceVersion // the state: a with busybox:1.36
	b := newPod("b")
	if _, err := env.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	a2 := a.(*corev1.Pod)
	a2.Spec.Containers[0].Image = "busybox:2"
	a2.Metadata.ResourceVersion = ""
	if _, err := env.Client.Update(ctx, a2); err != nil {
		t.Fatal(err)
	}
	now := regEtcdRevision(t, env)
	future := strconv.FormatInt(now+1000, 10)

	for name, c := range map[string]client.Interface{"grpc": env.Client, "rest": client.NewREST(env.HTTPURL, nil)} {
		t.Run(name, func(t *testing.T) {
			// Exact: the list as it was at the version, including objects changed since.
			l, err := c.List(ctx, pods, "default", client.ListOptions{ResourceVersion: then, ResourceVersionMatch: "Exact"})
			if err != nil {
				t.Fatal(err)
			}
			if got := regNames(l); fmt.Sprint(got) != "[a=busybox:1.36]" || l.ResourceVersion != then {
				t.Errorf("list Exact at %s: %v at %s; want [a=busybox:1.36] at %s", then, got, l.ResourceVersion, then)
			}
			// Exact with pages: every page at that version.
			l, err = c.List(ctx, pods, "", client.ListOptions{ResourceVersion: then, ResourceVersionMatch: "Exact", Limit: 1})
			if err != nil || len(l.Items) != 1 || l.ResourceVersion != then {
				t.Fatalf("paged list Exact: %v %v", err, l)
			}
			// NotOlderThan (the default) and "" and "0": the latest.
			for _, o := range []client.ListOptions{{ResourceVersion: then}, {ResourceVersion: then, ResourceVersionMatch: "NotOlderThan"}, {}, {ResourceVersion: "0"}} {
				l, err := c.List(ctx, pods, "default", o)
				if got := regNames(l); err != nil || fmt.Sprint(got) != "[a=busybox:2 b=busybox:1.36]" {
					t.Errorf("list %+v: %v %v; want the latest state", o, err, got)
				}
			}
			// A version etcd has not reached: 504 Too large resource version, retry after 1s.
			for _, o := range []client.ListOptions{{ResourceVersion: future}, {ResourceVersion: future, ResourceVersionMatch: "Exact"}} {
				if _, err := c.List(ctx, pods, "default", o); !regIsTooLargeRV(t, err) {
					t.Errorf("list %+v: %v; want 504 Timeout with cause ResourceVersionTooLarge and retryAfterSeconds 1", o, err)
				}
			}
			// Combinations Kubernetes refuses.
			for _, o := range []client.ListOptions{{ResourceVersionMatch: "Exact"}, {ResourceVersion: "0", ResourceVersionMatch: "Exact"}} {
				if _, err := c.List(ctx, pods, "default", o); !apierrors.IsInvalid(err) {
					t.Errorf("list %+v: %v; want 422 Invalid", o, err)
				}
			}
			first, err := c.List(ctx, pods, "", client.ListOptions{Limit: 1})
			if err != nil || first.Continue == "" {
				t.Fatalf("first page: %v", err)
			}
			if _, err := c.List(ctx, pods, "", client.ListOptions{Limit: 1, Continue: first.Continue, ResourceVersion: then}); apierrors.ReasonOf(err) != apierrors.ReasonBadRequest {
				t.Errorf("continue with a resourceVersion: %v; want 400", err)
			}
			if l, err := c.List(ctx, pods, "", client.ListOptions{Limit: 1, Continue: first.Continue, ResourceVersion: "0"}); err != nil || len(l.Items) != 1 {
				t.Errorf("continue with resourceVersion 0 (allowed): %v", err)
			}
		})
	}

	// sendInitialEvents belongs to watches; a list refuses it, as Kubernetes does.
	if code, st := restCall(t, env, "GET", podsPath+"?sendInitialEvents=true", ""); code != http.StatusUnprocessableEntity {
		t.Errorf("list with sendInitialEvents: %d %v; want 422", code, st)
	}

	// Get: "" and "0" and an old version read the latest; a future one is 504.
	for _, rv := range []string{"", "0", then} {
		code, got := restCall(t, env, "GET", podsPath+"/a?resourceVersion="+rv, "")
		if code != http.StatusOK || dig(got, "spec", "containers") == nil {
			t.Errorf("get at %q: %d", rv, code)
		}
	}
	code, st := restCall(t, env, "GET", podsPath+"/a?resourceVersion="+future, "")
	if code != http.StatusGatewayTimeout || st["reason"] != "Timeout" || dig(st, "details", "retryAfterSeconds") != float64(1) {
		t.Errorf("get at a future version: %d %v; want 504 Timeout, retryAfterSeconds 1", code, st)
	}
	code, st = restCall(t, env, "GET", podsPath+"/nope?resourceVersion="+future, "")
	if code != http.StatusGatewayTimeout {
		t.Errorf("get of a missing object at a future version: %d %v; want 504", code, st)
	}
	conn := regRawGRPC(t, env)
	_, err = corev1.NewPodAPIClient(conn).Get(ctx, &corev1.GetPodRequest{Namespace: "default", Name: "a", ResourceVersion: future})
	if !regIsTooLargeRV(t, err) {
		t.Errorf("gRPC get at a future version: %v; want 504 ResourceVersionTooLarge", err)
	}

	// A version etcd has compacted: 410.
	if _, err := env.Etcd.Compact(ctx, now); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.List(ctx, pods, "default", client.ListOptions{ResourceVersion: then, ResourceVersionMatch: "Exact"}); !apierrors.IsGone(err) {
		t.Errorf("list Exact at a compacted version: %v; want 410", err)
	}
}

// A continue token is opaque but not trusted: a forged one naming a future revision is a 400,
// not a 500.
func TestForgedContinueTokens(t *testing.T) {
	env := testenv.Start(t)
	for i := 0; i < 3; i++ {
		restCall(t, env, "POST", podsPath, podJSON(fmt.Sprintf("p-%d", i), nil))
	}
	forge := func(rev int64, start string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"rv":%d,"start":%q}`, rev, start)))
	}
	for _, tok := range []string{
		forge(1<<40, "/registry/pods/default/p-1"), // a future revision
		forge(5, "/registry/pods/kube-system/x"),   // outside the list
		forge(0, "/registry/pods/default/p-1"),     // no revision
		"!!!",                                      // not base64
	} {
		code, st := restCall(t, env, "GET", podsPath+"?limit=1&continue="+tok, "")
		if code != http.StatusBadRequest && code != http.StatusGone {
			t.Errorf("continue %q: %d %v; want 400 or 410", tok, code, st)
		}
	}
}
