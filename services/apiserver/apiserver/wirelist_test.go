package apiserver_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/services/apiserver/registry"
)

// TestListsLeaveEncoded: a gRPC list and a plain REST list are answered from the encoded
// forms (the object cache counts their lookups) and are the list the registry returns, the
// REST one byte for byte; a Table list still gets a Table.
func TestListsLeaveEncoded(t *testing.T) {
	env := testenv.Start(t, testenv.Options{NoBus: true})
	ctx := context.Background()
	pods, _ := scheme.Default().ForName("pods")
	const n = 6
	for i := 0; i < n; i++ {
		if _, err := env.Client.Create(ctx, testenv.RealisticPod("default", fmt.Sprintf("w-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	reg := env.APIServer.Registry()
	lookups := func() int64 { h, m := reg.ObjectCacheStats(); return h + m }
	want, err := reg.List(ctx, pods, "default", registry.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}

	before := lookups()
	got, err := env.Client.List(ctx, pods, "default", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d := lookups() - before; d != n {
		t.Fatalf("a gRPC list of %d pods made %d cache lookups: not answered encoded", n, d)
	}
	if len(got.Items) != n {
		t.Fatalf("gRPC list: %d items, want %d", len(got.Items), n)
	}
	for i, it := range got.Items {
		wantItem := want.ProtoReflect().Get(want.ProtoReflect().Descriptor().Fields().ByName("items")).List().Get(i).Message().Interface()
		if !proto.Equal(it, wantItem) {
			t.Fatalf("gRPC list item %d:\n got %v\nwant %v", i, it, wantItem)
		}
	}

	get := func(accept string) []byte {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, env.HTTPURL+"/api/v1/namespaces/default/pods", nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("REST list: %d %s", resp.StatusCode, body)
		}
		return body
	}
	wantJSON, err := codec.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	before = lookups()
	if body := get("application/json"); !bytes.Equal(bytes.TrimSpace(body), wantJSON) {
		t.Fatalf("REST list:\n got %s\nwant %s", body, wantJSON)
	}
	if d := lookups() - before; d != n {
		t.Fatalf("a REST list of %d pods made %d cache lookups: not answered encoded", n, d)
	}
	resp, err := http.Get(env.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	hits, _ := reg.ObjectCacheStats()
	if line := fmt.Sprintf("skiff_apiserver_list_cache_hits_total %d", hits); hits == 0 || !bytes.Contains(metrics, []byte(line)) {
		t.Fatalf("/metrics lacks %q (a REST list after a gRPC one reuses its entries)", line)
	}
	before = lookups()
	if body := get("application/json;as=Table;v=v1;g=meta.k8s.io"); !bytes.Contains(body, []byte(`"kind":"Table"`)) {
		t.Fatalf("a Table list did not get a Table: %s", body)
	}
	if d := lookups() - before; d != 0 {
		t.Fatalf("a Table list made %d cache lookups", d)
	}
}
