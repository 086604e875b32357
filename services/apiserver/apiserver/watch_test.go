package apiserver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apierrors"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/pkg/client"
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
	if _, err := env.Client.Update(ctx, p1); err != nil {
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
			// Selectors filter events.
			sel := watchN(t, c, "default", client.WatchOptions{ResourceVersion: rv, LabelSelector: "v=2"}, 2)
			if sel[0].Type != "MODIFIED" || sel[1].Type != "DELETED" {
				t.Errorf("labelSelector v=2 events: %s, %s; want MODIFIED, DELETED", sel[0].Type, sel[1].Type)
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
