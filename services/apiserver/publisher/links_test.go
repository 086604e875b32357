package publisher_test

import (
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/bus"
)

// familyLinks checks the family links of the stream's messages (what bus.Live relies on to
// notice a missing live message), computed from subjects alone: every link present names the
// previous message of the same family on the stream (a kind, a kind in a namespace, a node),
// and none names one where there is none. It returns how many links were absent although
// the family had a previous message.
func familyLinks(t *testing.T, ms []msg) (absent int) {
	t.Helper()
	last := map[string]string{}
	check := func(m msg, family, header string) {
		want, known := last[family]
		got := m.header.Get(header)
		switch {
		case got == "" && known:
			absent++
		case got != "" && got != want:
			t.Errorf("message %s: %s = %q; the previous message of %s is %q", m, header, got, family, want)
		}
		last[family] = m.id
	}
	for _, m := range ms {
		tok := strings.Split(m.subject, ".")
		switch {
		case len(tok) == 6 && tok[1] == "obj":
			check(m, strings.Join(tok[:4], ".")+".*.*", bus.HeaderFamilyPrev)
			if tok[4] != "_" {
				check(m, strings.Join(tok[:5], ".")+".*", bus.HeaderNamespacePrev)
			} else if h := m.header.Get(bus.HeaderNamespacePrev); h != "" {
				t.Errorf("message %s of a cluster-scoped kind has %s %q", m, bus.HeaderNamespacePrev, h)
			}
		case len(tok) == 7 && tok[1] == "node":
			check(m, strings.Join(tok[:3], ".")+".>", bus.HeaderFamilyPrev)
		case m.subject == bus.GapSubject:
		default:
			t.Errorf("message %s on an unexpected subject", m)
		}
	}
	return absent
}

// The publisher links each message to the previous one of its kind, of its kind in its
// namespace, and (node copies) of its node; a restarted publisher links what it knows and
// leaves the rest unlinked, never wrong.
func TestPublisherLinksFamilies(t *testing.T) {
	f := newFixture(t, 0)
	other := pod("o", nil)
	other.Metadata.Namespace = "other"
	first := f.put("/pods/default/a", pod("a", nil))
	f.put("/pods/other/o", other)
	f.put("/pods/default/b", pod("b", nil))
	f.put("/nodes/node-1", &corev1.Node{Metadata: &metav1.ObjectMeta{Name: "node-1"}})
	f.put("/nodes/node-2", &corev1.Node{Metadata: &metav1.ObjectMeta{Name: "node-2"}})
	a := pod("a", nil)
	a.Spec.NodeName = "node-1"
	f.put("/pods/default/a", a)
	other.Spec.NodeName = "node-1"
	f.put("/pods/other/o", other)
	a.Metadata.Annotations["note"] = "1"
	f.put("/pods/default/a", a)
	a.Spec.NodeName = "node-2" // DELETED on node-1, ADDED on node-2
	f.put("/pods/default/a", a)
	last := f.txn(clientv3.OpDelete(prefix+"/pods/default/a"), clientv3.OpDelete(prefix+"/pods/default/b"),
		clientv3.OpDelete(prefix+"/pods/other/o"))
	want := f.history(first, last, 0)
	stop := f.start()
	got := f.waitMessages(len(want))
	compare(t, got, want)
	// A new publisher on an empty stream knows every family's previous message.
	if n := familyLinks(t, got); n != 0 {
		t.Errorf("%d links missing from a publisher that published every message itself", n)
	}

	// Restarted, it knows the families of what it skips as already held (the stream's last
	// revision, replayed), and not the others until it publishes them: here the nodes'.
	stop()
	f.put("/nodes/node-1", &corev1.Node{Metadata: &metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"x": "y"}}})
	b := pod("b", nil)
	b.Spec.NodeName = "node-2"
	f.put("/pods/default/b", b)
	f.put("/pods/other/o2", pod("o2", nil))
	b.Metadata.Annotations["note"] = "1"
	f.put("/pods/default/b", b)
	f.start()
	got = f.waitMessages(len(want) + 6)
	if n := familyLinks(t, got); n != 1 {
		t.Errorf("%d links missing after a restart; want 1 (the nodes' family)", n)
	}
}
