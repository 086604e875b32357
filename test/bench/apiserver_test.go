// Package bench measures the apiserver against raw etcd on the same etcd in the same run, so
// the figures are ratios that survive a noisy shared machine.
package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/client"
	"github.com/skiff-project/skiff/services/apiserver/storage"
)

// benchPod is a realistic pod of about 1 KiB when stored.
func benchPod(name string) *corev1.Pod { return testenv.RealisticPod("default", name) }

// result is one measured operation.
type result struct {
	name string
	per  time.Duration
}

// BenchmarkAPIServer measures create, get and list(1,000) through gRPC and REST, and raw etcd
// Put/Get/Range of the same bytes on the same etcd, then prints the ratios. It finishes with a
// paced run of 500 creates/s reporting p50/p99 latency. Run with -benchtime=Nx.
//
// The apiserver runs with its event publisher (every create is also published to NATS by the
// same process, on these same 2 cores); SKIFF_BENCH_NOBUS=1 measures the request path alone.
func BenchmarkAPIServer(b *testing.B) {
	env := testenv.Start(b, testenv.Options{Fsync: os.Getenv("SKIFF_BENCH_NOFSYNC") == "",
		NoBus: os.Getenv("SKIFF_BENCH_NOBUS") != ""})
	if env.NATSURL == "" {
		fmt.Println("apiserver without the event bus: the request path alone")
	} else {
		fmt.Println("apiserver with its event publisher running (every change also goes to NATS)")
	}
	ctx := context.Background()
	rest := client.NewREST(env.HTTPURL, nil)
	podKind, _ := scheme.Default().ForName("pods")
	value, err := storage.Encode(benchPod("sizing-0"))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("stored pod size: %d bytes", len(value))

	var results []result
	run := func(name string, op func(i int) error) {
		var per time.Duration
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				if err := op(i); err != nil {
					b.Fatal(err)
				}
			}
			per = time.Since(start) / time.Duration(b.N)
		})
		results = append(results, result{name, per})
	}
	seq := 0
	next := func(prefix string) string { seq++; return prefix + "-" + strconv.Itoa(seq) }

	run("etcd-put", func(int) error { _, err := env.Etcd.Put(ctx, "/bench/raw/"+next("p"), string(value)); return err })
	firstPod := ""
	run("grpc-create", func(int) error {
		p, err := env.Client.Create(ctx, benchPod(next("g")))
		if err == nil && firstPod == "" {
			firstPod = p.GetMetadata().GetName()
		}
		return err
	})
	run("rest-create", func(int) error { _, err := rest.Create(ctx, benchPod(next("r"))); return err })
	run("etcd-get", func(int) error { _, err := env.Etcd.Get(ctx, "/bench/raw/p-1"); return err })
	run("grpc-get", func(int) error { _, err := env.Client.Get(ctx, podKind, "default", firstPod); return err })
	run("rest-get", func(int) error { _, err := rest.Get(ctx, podKind, "default", firstPod); return err })

	// Lists of exactly 1,000 pods: a namespace holding 1,000, and the same bytes raw.
	if _, err := env.Client.Create(ctx, &corev1.Namespace{ApiVersion: "v1", Kind: "Namespace", Metadata: &metav1.ObjectMeta{Name: "list1000"}}); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		p := benchPod(fmt.Sprintf("l-%d", i))
		p.Metadata.Namespace = "list1000"
		if _, err := env.Client.Create(ctx, p); err != nil {
			b.Fatal(err)
		}
		if _, err := env.Etcd.Put(ctx, fmt.Sprintf("/bench/list/%04d", i), string(value)); err != nil {
			b.Fatal(err)
		}
	}
	run("etcd-range-1000", func(int) error {
		r, err := env.Etcd.Get(ctx, "/bench/list/", clientv3.WithPrefix())
		if err == nil && len(r.Kvs) != 1000 {
			err = fmt.Errorf("raw range returned %d keys", len(r.Kvs))
		}
		return err
	})
	list := func(c client.Interface) func(int) error {
		return func(int) error {
			l, err := c.List(ctx, podKind, "list1000", client.ListOptions{})
			if err == nil && len(l.Items) != 1000 {
				err = fmt.Errorf("list returned %d pods", len(l.Items))
			}
			return err
		}
	}
	run("grpc-list-1000", list(env.Client))
	run("rest-list-1000", list(rest))

	byName := map[string]time.Duration{}
	for _, r := range results {
		byName[r.name] = r.per
	}
	ratio := func(a, base string) string {
		if byName[base] == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", float64(byName[a])/float64(byName[base]))
	}
	fmt.Printf("\n%-16s %12s %10s\n", "operation", "per op", "vs etcd")
	for _, r := range results {
		base := map[string]string{"grpc-create": "etcd-put", "rest-create": "etcd-put", "grpc-get": "etcd-get",
			"rest-get": "etcd-get", "grpc-list-1000": "etcd-range-1000", "rest-list-1000": "etcd-range-1000"}[r.name]
		rel := "baseline"
		if base != "" {
			rel = ratio(r.name, base)
		}
		fmt.Printf("%-16s %12s %10s\n", r.name, r.per.Round(time.Microsecond), rel)
	}

	paced(b, env, 500, 4*time.Second)
}

// paced issues creates at a fixed rate from a pool of workers and reports latency percentiles,
// for raw etcd puts and for gRPC creates.
func paced(b *testing.B, env *testenv.Env, perSecond int, d time.Duration) {
	ctx := context.Background()
	value, _ := storage.Encode(benchPod("paced-0"))
	measure := func(op func(i int) error) (p50, p99 time.Duration, errs int) {
		n := int(d.Seconds() * float64(perSecond))
		lat := make([]time.Duration, n)
		var wg sync.WaitGroup
		var mu sync.Mutex
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := 0; i < n; i++ {
			<-tick.C
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				start := time.Now()
				err := op(i)
				lat[i] = time.Since(start)
				if err != nil {
					mu.Lock()
					errs++
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat[n/2], lat[n*99/100], errs
	}
	ep50, ep99, eerr := measure(func(i int) error {
		_, err := env.Etcd.Put(ctx, fmt.Sprintf("/bench/paced/%d", i), string(value))
		return err
	})
	gp50, gp99, gerr := measure(func(i int) error {
		p := benchPod(fmt.Sprintf("paced-%d", i))
		_, err := env.Client.Create(ctx, proto.Clone(p).(*corev1.Pod))
		return err
	})
	fmt.Printf("\npaced %d creates/s for %s:\n", perSecond, d)
	fmt.Printf("  etcd put     p50 %8s  p99 %8s  errors %d\n", ep50.Round(time.Microsecond), ep99.Round(time.Microsecond), eerr)
	fmt.Printf("  grpc create  p50 %8s  p99 %8s  errors %d  (p99 %.2fx etcd)\n", gp50.Round(time.Microsecond),
		gp99.Round(time.Microsecond), gerr, float64(gp99)/float64(ep99))
	b.ReportMetric(float64(gp99.Microseconds())/1000, "create-p99-ms")
	if gerr > 0 || eerr > 0 {
		b.Errorf("paced run had errors: etcd %d, grpc %d", eerr, gerr)
	}
}
