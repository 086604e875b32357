package publisher

import (
	"bytes"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/bus"
)

// outgoing is one message to publish.
type outgoing struct {
	msg       *nats.Msg
	rev       int64
	index     int
	copyIndex int
	key       string // the object's etcd key, for logs
	namespace string
	name      string
	// family and nsFamily are the filters of the families the message belongs to (bus.Live):
	// its kind's or its node's, and its kind's in its namespace ("" if none).
	family, nsFamily string
}

// messages turns one etcd change into its stream messages: the object's subject, and for pods
// the subjects of the nodes it is bound to (or leaves).
func (p *Publisher) messages(ev *clientv3.Event, index int) []outgoing {
	key := string(ev.Kv.Key)
	kind, ns, name, ok := p.parseKey(key)
	if !ok {
		return nil
	}
	sel := p.selections[kind]
	rev := ev.Kv.ModRevision
	typ, payload := bus.Modified, ev.Kv.Value
	switch {
	case ev.Type == mvccpb.DELETE:
		typ, payload = bus.Deleted, nil
		if ev.PrevKv != nil {
			payload = ev.PrevKv.Value
		}
	case ev.IsCreate():
		typ = bus.Added
	}
	// Labels, selectable fields and (pods) the node, read off the wire from both values.
	var prevSel, curSel selected
	isPod := sel.nodeName >= 0
	if ev.PrevKv != nil && (typ == bus.Modified || isPod) {
		sel.read(ev.PrevKv.Value, &prevSel)
	}
	if typ != bus.Deleted && (typ == bus.Modified || isPod) {
		sel.read(ev.Kv.Value, &curSel)
	}
	// A MODIFIED change whose labels or selectable fields changed carries the previous
	// value, so that a selector watch can tell an object entering or leaving its selection.
	withPrev, prevOffset := payload, noPrev
	if typ == bus.Modified && ev.PrevKv != nil && !bytes.Equal(ev.PrevKv.Value, ev.Kv.Value) && differ(&prevSel, &curSel) {
		withPrev = make([]byte, 0, len(ev.Kv.Value)+len(ev.PrevKv.Value))
		withPrev = append(append(withPrev, ev.Kv.Value...), ev.PrevKv.Value...)
		prevOffset = len(ev.Kv.Value)
	}
	o := outgoing{rev: rev, index: index, key: key, namespace: ns, name: name, family: sel.family}
	if kind.Namespaced {
		o.nsFamily = bus.KindFilter(kind, ns)
	}
	out := []outgoing{o.with(bus.ObjectSubject(kind, ns, name), kind, typ, withPrev, prevOffset, 0)}
	if !isPod {
		return out
	}
	o.nsFamily = ""
	oldNode, newNode := sel.nodeOf(&prevSel), sel.nodeOf(&curSel)
	if oldNode != "" && oldNode != newNode {
		o.family = bus.NodeFilter(oldNode)
		out = append(out, o.with(bus.NodeSubject(oldNode, kind, ns, name), kind, bus.Deleted, ev.PrevKv.Value, noPrev, len(out)))
	}
	if newNode != "" {
		o.family = bus.NodeFilter(newNode)
		if oldNode != newNode { // the pod arrives on this node
			out = append(out, o.with(bus.NodeSubject(newNode, kind, ns, name), kind, bus.Added, payload, noPrev, len(out)))
		} else {
			out = append(out, o.with(bus.NodeSubject(newNode, kind, ns, name), kind, typ, withPrev, prevOffset, len(out)))
		}
	}
	return out
}

// noPrev is the prevOffset of a message without the previous object.
const noPrev = -1

// with is o as the message on subject (its copyIndex-th).
func (o outgoing) with(subject string, k *scheme.Kind, typ bus.EventType, payload []byte, prevOffset, copyIndex int) outgoing {
	m := nats.NewMsg(subject)
	m.Data = payload
	m.Header.Set(bus.HeaderType, string(typ))
	m.Header.Set(bus.HeaderRevision, strconv.FormatInt(o.rev, 10))
	m.Header.Set(bus.HeaderKind, k.APIVersion()+"/"+k.Kind)
	m.Header.Set(jetstream.MsgIDHeader, bus.MsgID(o.rev, o.index, copyIndex))
	if prevOffset != noPrev {
		m.Header.Set(bus.HeaderPrevOffset, strconv.Itoa(prevOffset))
	}
	o.msg, o.copyIndex = m, copyIndex
	return o
}

// oversizeMarker is what the publisher sends in o's place when the bus cannot carry o (size
// bytes with its headers, above limit): the same subject, id and headers, without the
// object. Readers fetch the object from the API.
func (p *Publisher) oversizeMarker(o outgoing, size, limit int64) *nats.Msg {
	m := nats.NewMsg(o.msg.Subject)
	for k, v := range o.msg.Header {
		if k != bus.HeaderPrevOffset {
			m.Header[k] = v
		}
	}
	m.Header.Set(bus.HeaderOversize, strconv.Itoa(len(o.msg.Data)))
	m.Header.Set(bus.HeaderNamespace, o.namespace)
	m.Header.Set(bus.HeaderName, o.name)
	p.m.oversize.Inc()
	p.log.Warn("change too large for the bus: published without the object; readers fetch it from the API",
		"key", o.key, "revision", o.rev, "subject", o.msg.Subject, "bytes", size, "maxPayload", limit)
	return m
}
