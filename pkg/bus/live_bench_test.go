package bus_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-project/skiff/internal/testenv"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
)

// BenchmarkLiveFanout isolates the bus's fan-out: 100 pod readers in one process, 3,000
// changes published at 1,000/s straight into the stream with the publisher's headers (no
// etcd, no apiserver), read (a) through one shared Live (one plain NATS subscription and one
// decode per change) and (b) as before, one JetStream ordered consumer per reader
// (Subscription.Run). Same NATS, same run; latency is publish -> the reader's handler.
func BenchmarkLiveFanout(b *testing.B) {
	const readers, changes, rate = 100, 3000, 1000
	n := testenv.NATS(b)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(changes+10))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := bus.EnsureStream(context.Background(), js, bus.DefaultStreamConfig()); err != nil {
		b.Fatal(err)
	}
	pods, _ := scheme.Default().ForName("pods")
	var rev atomic.Int64
	publish := func(run string) {
		// Paced: change k is sent at start + k/rate.
		start := time.Now()
		for k := range changes {
			if d := time.Until(start.Add(time.Duration(k) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
			p := testenv.RealisticPod("default", "p"+strconv.Itoa(k%50))
			r := rev.Add(1)
			p.Metadata.Annotations["bench/run"] = run
			p.Metadata.Annotations["bench/sent"] = strconv.FormatInt(time.Now().UnixNano(), 10)
			data, err := proto.Marshal(p)
			if err != nil {
				b.Fatal(err)
			}
			m := nats.NewMsg(bus.ObjectSubject(pods, "default", p.Metadata.Name))
			m.Data = data
			m.Header.Set(bus.HeaderType, string(bus.Modified))
			m.Header.Set(bus.HeaderRevision, strconv.FormatInt(r, 10))
			m.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(r-1, 10))
			m.Header.Set(bus.HeaderKind, "v1/Pod")
			m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(r, 0, 0))
			if r > 1 {
				m.Header.Set(bus.HeaderFamilyPrev, bus.MsgID(r-1, 0, 0))
				m.Header.Set(bus.HeaderNamespacePrev, bus.MsgID(r-1, 0, 0))
			}
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishes not acknowledged in a minute")
		}
	}
	type result struct {
		p50, p99  time.Duration
		delivered int
		cpu       time.Duration
		stats     bus.LiveStats
	}
	measure := func(mode string) result {
		run := mode
		after := rev.Load()
		lat := make([][]int64, readers)
		var got atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		live := bus.NewLive(js, scheme.Default())
		sub := bus.NewSubscription(js, scheme.Default())
		for i := range readers {
			lat[i] = make([]int64, 0, changes)
			handle := func(ev bus.Event) error {
				a := ev.Object.GetMetadata().GetAnnotations()
				if a["bench/run"] == run {
					sent, _ := strconv.ParseInt(a["bench/sent"], 10, 64)
					lat[i] = append(lat[i], time.Now().UnixNano()-sent)
					got.Add(1)
				}
				return nil
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if mode == "live" {
					_ = live.Run(ctx, []string{bus.KindFilter(pods, "")}, after, handle)
				} else {
					_ = sub.Run(ctx, []string{bus.KindFilter(pods, "")}, after, handle)
				}
			}()
		}
		time.Sleep(time.Second) // every reader open
		cpu0 := processCPU()
		publish(run)
		deadline := time.Now().Add(2 * time.Minute)
		for got.Load() < readers*changes && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cpu := processCPU() - cpu0
		cancel()
		wg.Wait()
		var all []int64
		for _, l := range lat {
			all = append(all, l...)
		}
		slices.Sort(all)
		r := result{delivered: len(all), cpu: cpu, stats: live.Stats()}
		if len(all) > 0 {
			r.p50 = time.Duration(all[len(all)/2])
			r.p99 = time.Duration(all[len(all)*99/100])
		}
		return r
	}
	for range b.N {
		old := measure("consumers")
		lv := measure("live")
		fmt.Printf("\nFan-out, %d readers in one process, %d changes at %d/s (~1 KiB pods), NATS only (no etcd, no apiserver):\n",
			readers, changes, rate)
		fmt.Printf("%-34s %10s %10s %10s %14s %12s\n", "mode", "p50", "p99", "delivered", "process CPU", "CPU/delivery")
		for _, x := range []struct {
			name string
			r    result
		}{{"one JetStream consumer per reader", old}, {"shared live feed (bus.Live)", lv}} {
			per := time.Duration(0)
			if x.r.delivered > 0 {
				per = x.r.cpu / time.Duration(x.r.delivered)
			}
			fmt.Printf("%-34s %10s %10s %10d %14s %12s\n", x.name, x.r.p50.Round(10*time.Microsecond), x.r.p99.Round(10*time.Microsecond),
				x.r.delivered, x.r.cpu.Round(time.Millisecond), per)
		}
		fmt.Printf("live feed stats: %+v\n", lv.stats)
		ratio := func(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "NOT met"
		}
		complete := lv.delivered == readers*changes
		fmt.Printf("goal: live p99 with %d readers at %d changes/s < 10ms: %s (%.2fx the consumers' %s) %s\n", readers, rate,
			lv.p99.Round(10*time.Microsecond), ratio(lv.p99, old.p99), old.p99.Round(10*time.Microsecond), verdict(complete && lv.p99 < 10*time.Millisecond))
		fmt.Printf("goal: live CPU per delivery below the consumers': %.2fx %s\n", ratio(lv.cpu, old.cpu),
			verdict(complete && lv.cpu < old.cpu))
		b.ReportMetric(float64(lv.p99.Microseconds())/1000, "live-p99-ms")
		b.ReportMetric(float64(old.p99.Microseconds())/1000, "consumers-p99-ms")
	}
}

// processCPU is this process's CPU time so far (user and system); embedded NATS runs in it.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
