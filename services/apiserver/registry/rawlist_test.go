package registry_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/registry"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

func listSetup(t *testing.T, cacheBytes int) (*registry.Registry, *scheme.Kind) {
	t.Helper()
	_, etcd := testenv.Etcd(t)
	r := registry.New(storage.New(etcd), scheme.Default(), registry.Options{ObjectCacheBytes: cacheBytes})
	ctx := context.Background()
	pods, err := scheme.Default().ForName("pods")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"a", "b"} {
		if err := r.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 24; i++ {
		ns := "a"
		if i%4 == 3 {
			ns = "b"
		}
		p := testenv.RealisticPod(ns, fmt.Sprintf("p-%02d", i))
		if i%3 == 0 {
			p.Metadata.Labels["tier"] = "db"
		}
		if _, err := r.Create(ctx, pods, ns, p, registry.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return r, pods
}

// checkEncoded compares ListEncoded in both forms with List: the protobuf decodes to the
// same list, and the JSON is byte for byte the codec's JSON of it.
func checkEncoded(t *testing.T, r *registry.Registry, k *scheme.Kind, ns string, opts registry.ListOptions) proto.Message {
	t.Helper()
	ctx := context.Background()
	want, err := r.List(ctx, k, ns, opts)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := r.ListEncoded(ctx, k, ns, opts, registry.FormProto)
	if err != nil {
		t.Fatal(err)
	}
	got := k.NewList()
	if err := proto.Unmarshal(wire, got); err != nil {
		t.Fatalf("the encoded list does not decode: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("ns %q %+v: the protobuf list differs from List's:\n got %v\nwant %v", ns, opts, got, want)
	}
	wantJSON, err := codec.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, err := r.ListEncoded(ctx, k, ns, opts, registry.FormJSON)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Fatalf("ns %q %+v: the JSON list differs from List's:\n got %s\nwant %s", ns, opts, gotJSON, wantJSON)
	}
	return want
}

// TestListEncodedIsList: in every form, with and without selectors, pages and namespaces,
// the encoded list is the list List returns (twice: from a cold cache, then a warm one).
func TestListEncodedIsList(t *testing.T) {
	r, pods := listSetup(t, 0)
	cases := []registry.ListOptions{
		{}, {LabelSelector: "tier=db"}, {LabelSelector: "tier!=db"}, {FieldSelector: "metadata.name=p-04"},
		{Limit: 5}, {Limit: 5, LabelSelector: "tier=web"}, {LabelSelector: "nothing=matches"},
	}
	for pass := 0; pass < 2; pass++ {
		for _, ns := range []string{"a", "b", ""} {
			for _, opts := range cases {
				l := checkEncoded(t, r, pods, ns, opts)
				if opts.Limit > 0 {
					// The next page, by the continue token.
					if c := l.ProtoReflect().Get(l.ProtoReflect().Descriptor().Fields().ByName("metadata")).Message().Interface().(*metav1.ListMeta).GetContinue(); c != "" {
						opts.Continue = c
						checkEncoded(t, r, pods, ns, opts)
					}
				}
			}
		}
	}
}

// TestListEncodedNeverStale: the cache serves a version only for its own revision: an update
// is listed with its new content, a deleted object is gone, one recreated under the same name
// is the new one; unchanged objects come from the cache (the counters show it).
func TestListEncodedNeverStale(t *testing.T) {
	r, pods := listSetup(t, 0)
	ctx := context.Background()
	for _, form := range []registry.ListForm{registry.FormProto, registry.FormJSON} {
		list := func() map[string]*corev1.Pod {
			t.Helper()
			b, err := r.ListEncoded(ctx, pods, "a", registry.ListOptions{}, form)
			if err != nil {
				t.Fatal(err)
			}
			l := &corev1.PodList{}
			if form == registry.FormProto {
				err = proto.Unmarshal(b, l)
			} else {
				err = codec.Unmarshal(b, l)
			}
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]*corev1.Pod{}
			for _, p := range l.Items {
				out[p.Metadata.Name] = p
			}
			return out
		}
		first := list()
		hits0, _ := r.ObjectCacheStats()
		again := list()
		hits1, _ := r.ObjectCacheStats()
		if hits1-hits0 != int64(len(first)) {
			t.Fatalf("form %d: a second list of %d unchanged pods hit the cache %d times", form, len(first), hits1-hits0)
		}
		for name, p := range first {
			if !proto.Equal(p, again[name]) {
				t.Fatalf("form %d: %s differs between two lists with no write", form, name)
			}
		}

		p := first["p-01"]
		p.Metadata.Labels["tier"] = fmt.Sprintf("changed-%d", form)
		updated, err := r.Update(ctx, pods, "a", "p-01", p, registry.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Delete(ctx, pods, "a", "p-02", registry.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Delete(ctx, pods, "a", "p-05", registry.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		again5 := testenv.RealisticPod("a", "p-05")
		again5.Metadata.Labels["tier"] = "recreated"
		recreated, err := r.Create(ctx, pods, "a", again5, registry.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}

		after := list()
		if got := after["p-01"]; got.Metadata.Labels["tier"] != p.Metadata.Labels["tier"] ||
			got.Metadata.ResourceVersion != updated.GetMetadata().GetResourceVersion() {
			t.Fatalf("form %d: updated pod listed as %v (rv %s), want tier %s rv %s", form, got.Metadata.Labels,
				got.Metadata.ResourceVersion, p.Metadata.Labels["tier"], updated.GetMetadata().GetResourceVersion())
		}
		if _, ok := after["p-02"]; ok {
			t.Fatalf("form %d: deleted pod p-02 is still listed", form)
		}
		if got := after["p-05"]; got == nil || got.Metadata.Labels["tier"] != "recreated" ||
			got.Metadata.Uid != recreated.GetMetadata().GetUid() {
			t.Fatalf("form %d: recreated pod p-05 listed as %v", form, got)
		}
		// Put back what the next form's pass expects.
		if _, err := r.Create(ctx, pods, "a", testenv.RealisticPod("a", "p-02"), registry.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestListEncodedWithTinyCache: a cache bound below one object only costs speed: lists stay
// right.
func TestListEncodedWithTinyCache(t *testing.T) {
	r, pods := listSetup(t, 512)
	for pass := 0; pass < 2; pass++ {
		checkEncoded(t, r, pods, "", registry.ListOptions{})
		checkEncoded(t, r, pods, "a", registry.ListOptions{LabelSelector: "tier=db"})
	}
	r, pods = listSetup(t, -1)
	checkEncoded(t, r, pods, "", registry.ListOptions{})
}
