package dns

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
)

// BenchmarkQueries: A queries for 1,000 services over UDP on loopback from 8 concurrent
// clients for 3 s (make bench-services). It prints queries/s; no assertion.
func BenchmarkQueries(b *testing.B) {
	env := testenv.Start(b)
	ctx := context.Background()
	const services = 1000
	for i := range services {
		if _, err := env.Client.Create(ctx, svc(fmt.Sprintf("svc-%d", i), "default", "",
			&corev1.ServicePort{Name: "http", Port: 80, Protocol: "TCP"})); err != nil {
			b.Fatal(err)
		}
	}
	s := startServer(b, env, Config{})
	var done atomic.Int64
	var failed atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: time.Second}
			conn, err := c.Dial(s.Addr().String())
			if err != nil {
				failed.Add(1)
				return
			}
			defer conn.Close()
			m := new(dns.Msg)
			for i := w; time.Now().Before(deadline); i += 8 {
				m.SetQuestion(fmt.Sprintf("svc-%d.default.svc.cluster.local.", i%services), dns.TypeA)
				resp, _, err := c.ExchangeWithConn(m, conn)
				if err != nil || len(resp.Answer) != 1 {
					failed.Add(1)
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Printf("DNS: %d A queries answered in 3s from 8 UDP clients over loopback: %.0f queries/s (%d failed)\n",
		done.Load(), float64(done.Load())/3, failed.Load())
	fmt.Printf("goal: DNS queries/s (no target set): %.0f/s\n", float64(done.Load())/3)
}
