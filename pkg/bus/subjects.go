// Package bus carries every committed change of the API from etcd to its consumers over NATS
// JetStream. The apiserver's publisher is the one etcd watch in the system; controllers,
// kubelets and the Watch API read the stream, never etcd. See docs/event-bus.md.
package bus

import (
	"strconv"
	"strings"

	"github.com/skiff-project/skiff/pkg/apis/scheme"
)

// Subjects:
//
//	skiff.obj.{group}.{resource}.{namespace}.{name}   every change of every object
//	skiff.node.{node}.{group}.{resource}.{namespace}.{name}   pods bound to {node}
//	skiff.gap   compaction gap markers (GapSubject)
//
// {group} is "core" for the core group and {namespace} is "_" for cluster-scoped kinds, so
// that each token is non-empty. Object names may hold dots, which NATS reserves as the token
// separator: they travel as "~", a character names cannot contain.
const (
	subjectRoot     = "skiff"
	objectToken     = "obj"
	nodeToken       = "node"
	clusterScopedNS = "_"
)

// Headers of every bus message.
const (
	HeaderType     = "Skiff-Type"     // ADDED, MODIFIED, DELETED
	HeaderRevision = "Skiff-Revision" // the etcd revision of the change
	// HeaderPrevRevision is the revision of the message before this one in the stream. The
	// first message still held tells a reader whether anything after its start point has aged
	// out: if its predecessor's revision is newer than the start point, something has.
	HeaderPrevRevision = "Skiff-Prev-Revision"
	HeaderKind         = "Skiff-Kind" // apiVersion/kind, e.g. "apps/v1/Deployment"
	// HeaderPrevOffset, on a MODIFIED message whose labels or selectable fields changed, splits
	// the payload: Data[:N] is the new object, Data[N:] its previous stored value. Without it,
	// the previous value had the same labels and selectable fields as the new one.
	HeaderPrevOffset = "Skiff-Prev-Offset"
	// HeaderOversize marks a change the bus could not carry (its payload, in bytes, was above
	// the server's max payload): the message has no data, and HeaderNamespace and HeaderName
	// name the object, which readers fetch from the API.
	HeaderOversize = "Skiff-Oversize"
	// HeaderFamilyPrev links a message to the previous one of its family, by Nats-Msg-Id: on
	// skiff.obj subjects the previous change of the same kind (any namespace), on skiff.node
	// subjects the previous message of the same node. A live reader (Live) that has not
	// read that message knows it missed something. Absent when the publisher does not know
	// the previous one (its first message of the family in a term, or the first after a
	// compaction gap): the reader then asks the stream.
	HeaderFamilyPrev = "Skiff-Family-Prev"
	// HeaderNamespacePrev is HeaderFamilyPrev within the kind and namespace, on the
	// skiff.obj subjects of namespaced kinds.
	HeaderNamespacePrev = "Skiff-Namespace-Prev"
	HeaderNamespace     = "Skiff-Namespace"
	HeaderName          = "Skiff-Name"
)

// GapSubject carries compaction gap markers: HeaderType Gap, HeaderRevision C (etcd's
// compaction revision, the first one still available) and HeaderPrevRevision P. The changes
// with revisions in (P, C) are lost for good; a reader that had not read up to C-1 must list
// again. It lies inside the stream's subject space, and every reader adds it to its filters.
const GapSubject = subjectRoot + ".gap"

// EventType is what happened to an object.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
	// Gap is the type of a compaction gap marker (GapSubject); readers never hand it out.
	Gap EventType = "GAP"
)

func token(s string) string {
	if s == "" {
		return clusterScopedNS
	}
	return strings.ReplaceAll(s, ".", "~")
}

func groupToken(k *scheme.Kind) string {
	if k.Group == "" {
		return "core"
	}
	return token(k.Group)
}

// ObjectSubject is the subject of changes to one object.
func ObjectSubject(k *scheme.Kind, namespace, name string) string {
	return strings.Join([]string{subjectRoot, objectToken, groupToken(k), k.Resource, token(namespace), token(name)}, ".")
}

// KindFilter matches every change of a kind in namespace ("" for all namespaces).
func KindFilter(k *scheme.Kind, namespace string) string {
	ns := "*"
	if namespace != "" {
		ns = token(namespace)
	}
	return strings.Join([]string{subjectRoot, objectToken, groupToken(k), k.Resource, ns, "*"}, ".")
}

// NodeSubject is the subject of a pod's changes as seen by the node it is bound to.
func NodeSubject(node string, k *scheme.Kind, namespace, name string) string {
	return strings.Join([]string{subjectRoot, nodeToken, token(node), groupToken(k), k.Resource, token(namespace), token(name)}, ".")
}

// NodeFilter matches what a node's agent needs: the pods bound to it, and nothing else.
func NodeFilter(node string) string {
	return strings.Join([]string{subjectRoot, nodeToken, token(node), ">"}, ".")
}

// AllSubjects is the stream's subject space.
func AllSubjects() string { return subjectRoot + ".>" }

// MsgID names a message for JetStream's de-duplication: the revision, the change's index
// within that revision (one transaction may change several keys) and the copy (an object
// change and its node-scoped copies).
func MsgID(rev int64, index, copyIndex int) string {
	return strconv.FormatInt(rev, 10) + "." + strconv.Itoa(index) + "." + strconv.Itoa(copyIndex)
}

// ParseMsgID is MsgID's inverse.
func ParseMsgID(id string) (rev int64, index, copyIndex int, ok bool) {
	parts := strings.Split(id, ".")
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	r, err1 := strconv.ParseInt(parts[0], 10, 64)
	i, err2 := strconv.Atoi(parts[1])
	c, err3 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return r, i, c, true
}
