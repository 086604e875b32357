package apiserver_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/skiff-project/skiff/internal/testenv"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
	"github.com/skiff-project/skiff/services/apiserver/apiserver"
)

// testBus is a real apiserver whose event bus the test writes. The test holds the publisher
// election, so the apiserver's own publisher never publishes; the test publishes, for changes
// it really made through the API, the messages of the bus contract (docs/event-bus.md),
// including those today's publisher may not send (previous values, oversize and gap markers).
type testBus struct {
	t    *testing.T
	env  *testenv.Env
	js   jetstream.JetStream
	last int64 // revision of the last message, for Skiff-Prev-Revision
}

// publisherElection is the election the apiserver's publisher campaigns in.
const publisherElection = "/skiff/elections/publisher"

func startTestBus(t *testing.T) *testBus {
	t.Helper()
	env := testenv.Start(t, testenv.Options{Configure: func(cfg *apiserver.Config) {
		session, err := concurrency.NewSession(cfg.Etcd, concurrency.WithTTL(30))
		if err != nil {
			t.Fatalf("etcd session: %v", err)
		}
		t.Cleanup(func() { _ = session.Close() })
		if err := concurrency.NewElection(session, publisherElection).Campaign(context.Background(), "test"); err != nil {
			t.Fatalf("hold the publisher election: %v", err)
		}
	}})
	return &testBus{t: t, env: env, js: env.JetStream(t)}
}

// stored is the value of obj's key at revision rev (the revision before a delete holds its
// last state).
func (b *testBus) stored(k *scheme.Kind, ns, name string, rev int64) []byte {
	b.t.Helper()
	key := b.env.APIServer.Registry().Key(k, ns, name)
	resp, err := b.env.Etcd.Get(context.Background(), key, clientv3.WithRev(rev))
	if err != nil || len(resp.Kvs) != 1 {
		b.t.Fatalf("read %s at %d: %v (%d keys)", key, rev, err, len(resp.Kvs))
	}
	return resp.Kvs[0].Value
}

// change publishes obj's change at its resourceVersion as the publisher would: ADDED and
// MODIFIED carry the stored value (with the previous one when withPrev), DELETED the last
// state (rev is then the deleting revision).
func (b *testBus) change(typ bus.EventType, obj scheme.Object, rev int64, withPrev bool) {
	b.t.Helper()
	k, err := scheme.Default().ForMessage(obj)
	if err != nil {
		b.t.Fatal(err)
	}
	md := obj.GetMetadata()
	m := b.message(k, typ, md.GetNamespace(), md.GetName())
	if typ == bus.Deleted {
		m.Data = b.stored(k, md.GetNamespace(), md.GetName(), rev-1)
	} else {
		m.Data = b.stored(k, md.GetNamespace(), md.GetName(), rev)
	}
	if withPrev {
		m.Header.Set(bus.HeaderPrevOffset, strconv.Itoa(len(m.Data)))
		m.Data = append(m.Data, b.stored(k, md.GetNamespace(), md.GetName(), rev-1)...)
	}
	b.publish(m, rev)
	if k.Group == "" && k.Resource == "pods" {
		b.nodeCopies(k, typ, obj, rev, m)
	}
}

// nodeCopies publishes a pod change's copies on the subjects of the nodes it leaves and
// joins, as the publisher does: DELETED (its last state) on the node it leaves, ADDED on the
// node it arrives on, the change itself on the node it stays on.
func (b *testBus) nodeCopies(k *scheme.Kind, typ bus.EventType, obj scheme.Object, rev int64, m *nats.Msg) {
	b.t.Helper()
	md := obj.GetMetadata()
	newNode, oldNode := "", ""
	if typ != bus.Deleted {
		newNode = obj.(*corev1.Pod).GetSpec().GetNodeName()
	}
	if typ != bus.Added {
		prev, err := b.env.APIServer.Registry().GetAtRevision(context.Background(), k, md.GetNamespace(), md.GetName(), rev-1)
		if err != nil {
			b.t.Fatalf("read %s at %d: %v", md.GetName(), rev-1, err)
		}
		oldNode = prev.(*corev1.Pod).GetSpec().GetNodeName()
	}
	copyIndex := 1
	send := func(node string, typ bus.EventType, data []byte, prevOffset string) {
		c := b.message(k, typ, md.GetNamespace(), md.GetName())
		c.Subject = bus.NodeSubject(node, k, md.GetNamespace(), md.GetName())
		c.Data = data
		if prevOffset != "" {
			c.Header.Set(bus.HeaderPrevOffset, prevOffset)
		}
		c.Header.Set(jetstream.MsgIDHeader, bus.MsgID(rev, 0, copyIndex))
		copyIndex++
		b.publish(c, rev)
	}
	if oldNode != "" && oldNode != newNode {
		send(oldNode, bus.Deleted, b.stored(k, md.GetNamespace(), md.GetName(), rev-1), "")
	}
	switch {
	case newNode != "" && newNode != oldNode:
		send(newNode, bus.Added, b.stored(k, md.GetNamespace(), md.GetName(), rev), "")
	case newNode != "":
		send(newNode, typ, m.Data, m.Header.Get(bus.HeaderPrevOffset))
	}
}

// oversize publishes the marker of a change the bus could not carry.
func (b *testBus) oversize(typ bus.EventType, k *scheme.Kind, ns, name string, rev int64) {
	b.t.Helper()
	m := b.message(k, typ, ns, name)
	m.Header.Set(bus.HeaderOversize, "3000000")
	m.Header.Set(bus.HeaderNamespace, ns)
	m.Header.Set(bus.HeaderName, name)
	b.publish(m, rev)
}

// gap publishes a compaction gap marker: the changes in (last, c) are lost.
func (b *testBus) gap(c int64) {
	b.t.Helper()
	m := nats.NewMsg(bus.GapSubject)
	m.Header.Set(bus.HeaderType, string(bus.Gap))
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(c, -1, 0))
	b.publish(m, c)
}

func (b *testBus) message(k *scheme.Kind, typ bus.EventType, ns, name string) *nats.Msg {
	m := nats.NewMsg(bus.ObjectSubject(k, ns, name))
	m.Header.Set(bus.HeaderType, string(typ))
	m.Header.Set(bus.HeaderKind, k.APIVersion()+"/"+k.Kind)
	return m
}

func (b *testBus) publish(m *nats.Msg, rev int64) {
	b.t.Helper()
	if m.Header.Get(jetstream.MsgIDHeader) == "" {
		m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(rev, 0, 0))
	}
	m.Header.Set(bus.HeaderRevision, strconv.FormatInt(rev, 10))
	m.Header.Set(bus.HeaderPrevRevision, strconv.FormatInt(b.last, 10))
	if _, err := b.js.PublishMsg(context.Background(), m); err != nil {
		b.t.Fatalf("publish %s at %d: %v", m.Subject, rev, err)
	}
	b.last = rev
}

func rvOf(t *testing.T, obj scheme.Object) int64 {
	t.Helper()
	rv, err := strconv.ParseInt(obj.GetMetadata().GetResourceVersion(), 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", obj.GetMetadata().GetResourceVersion(), err)
	}
	return rv
}
