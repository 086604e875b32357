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

	interleaved(b, env, firstPod)
	paced(b, env, 500, 4*time.Second)
}

// interleaved measures each operation right after its raw etcd baseline, round after round,
// and compares medians: on a shared machine a burst of load then hits both sides of a ratio
// alike, where the sequential runs above can measure the two at different moments. The goal
// lines come from here. SKIFF_BENCH_ROUNDS sets the rounds (default 200; lists a third).
func interleaved(b *testing.B, env *testenv.Env, pod string) {
	ctx := context.Background()
	rest := client.NewREST(env.HTTPURL, nil)
	podKind, _ := scheme.Default().ForName("pods")
	value, _ := storage.Encode(benchPod("interleaved-0"))
	rounds := 200
	if n, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	type op struct {
		name, base string
		run        func(i int) error
		every      int // run in every every-th round
	}
	list := func(c client.Interface) func(int) error {
		return func(int) error {
			l, err := c.List(ctx, podKind, "list1000", client.ListOptions{})
			if err == nil && len(l.Items) != 1000 {
				err = fmt.Errorf("list returned %d pods", len(l.Items))
			}
			return err
		}
	}
	ops := []op{
		{"etcd-put", "", func(i int) error {
			_, err := env.Etcd.Put(ctx, fmt.Sprintf("/bench/interleaved/%d", i), string(value))
			return err
		}, 1},
		{"grpc-create", "etcd-put", func(i int) error {
			_, err := env.Client.Create(ctx, benchPod(fmt.Sprintf("ig-%d", i)))
			return err
		}, 1},
		{"rest-create", "etcd-put", func(i int) error {
			_, err := rest.Create(ctx, benchPod(fmt.Sprintf("ir-%d", i)))
			return err
		}, 1},
		{"etcd-get", "", func(int) error { _, err := env.Etcd.Get(ctx, "/bench/raw/p-1"); return err }, 1},
		{"grpc-get", "etcd-get", func(int) error { _, err := env.Client.Get(ctx, podKind, "default", pod); return err }, 1},
		{"rest-get", "etcd-get", func(int) error { _, err := rest.Get(ctx, podKind, "default", pod); return err }, 1},
		{"etcd-range-1000", "", func(int) error {
			r, err := env.Etcd.Get(ctx, "/bench/list/", clientv3.WithPrefix())
			if err == nil && len(r.Kvs) != 1000 {
				err = fmt.Errorf("raw range returned %d keys", len(r.Kvs))
			}
			return err
		}, 3},
		{"grpc-list-1000", "etcd-range-1000", list(env.Client), 3},
		{"rest-list-1000", "etcd-range-1000", list(rest), 3},
	}
	lat := make([][]time.Duration, len(ops))
	for i := 0; i < rounds; i++ {
		for j, o := range ops {
			if i%o.every != 0 {
				continue
			}
			start := time.Now()
			if err := o.run(i); err != nil {
				b.Fatalf("%s: %v", o.name, err)
			}
			lat[j] = append(lat[j], time.Since(start))
		}
	}
	p50 := map[string]time.Duration{}
	fmt.Printf("\ninterleaved, %d rounds (each operation right after its baseline):\n", rounds)
	fmt.Printf("%-16s %10s %10s %10s\n", "operation", "p50", "p99", "p50 vs etcd")
	for j, o := range ops {
		l := lat[j]
		sort.Slice(l, func(a, c int) bool { return l[a] < l[c] })
		p50[o.name] = l[len(l)/2]
		rel := "baseline"
		if o.base != "" {
			rel = fmt.Sprintf("%.2fx", float64(p50[o.name])/float64(p50[o.base]))
		}
		fmt.Printf("%-16s %10s %10s %10s\n", o.name, l[len(l)/2].Round(time.Microsecond), l[len(l)*99/100].Round(time.Microsecond), rel)
	}
	goal := func(what string, a, base string, target float64) {
		r := float64(p50[a]) / float64(p50[base])
		verdict := "met"
		if r > target {
			verdict = "NOT met"
		}
		fmt.Printf("goal: %s within %gx %s: %.2fx %s\n", what, target, map[string]string{
			"etcd-put": "raw Put", "etcd-range-1000": "raw range"}[base], r, verdict)
		b.ReportMetric(r, a+"-x")
	}
	goal("create (gRPC)", "grpc-create", "etcd-put", 1.5)
	goal("create (REST)", "rest-create", "etcd-put", 1.5)
	goal("list(1000) (gRPC)", "grpc-list-1000", "etcd-range-1000", 3)
	goal("list(1000) (REST)", "rest-list-1000", "etcd-range-1000", 3)
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
