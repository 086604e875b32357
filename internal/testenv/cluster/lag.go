package cluster

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LaggingJetStream connects to the cluster's NATS through a proxy that delays everything the
// server sends by lag: a bus whose events reach this reader late, as under load. Controllers
// given it see their own writes only lag after making them.
func (c *Cluster) LaggingJetStream(t testing.TB, lag time.Duration) jetstream.JetStream {
	t.Helper()
	u, err := url.Parse(c.Env.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			down, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", u.Host)
			if err != nil {
				down.Close()
				continue
			}
			wg.Go(func() { _, _ = io.Copy(up, down); up.Close() })
			wg.Go(func() { delayedCopy(ctx, down, up, lag); down.Close() })
		}
	})
	nc, err := nats.Connect("nats://" + lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		cancel()
		lis.Close()
		wg.Wait()
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// delayedCopy copies src to dst, writing each chunk lag after it was read, in order.
func delayedCopy(ctx context.Context, dst io.WriteCloser, src io.ReadCloser, lag time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{at: time.Now().Add(lag), data: buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		select {
		case <-time.After(time.Until(c.at)):
		case <-ctx.Done():
			src.Close()
			return
		}
		if _, err := dst.Write(c.data); err != nil {
			src.Close()
			return
		}
	}
}
