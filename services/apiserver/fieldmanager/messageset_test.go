package fieldmanager

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
	"github.com/skiff-project/skiff/pkg/apis/schema"
	"github.com/skiff-project/skiff/pkg/apis/scheme"
	"github.com/skiff-project/skiff/pkg/codec"
)

// randomStrings are few, so that list-map keys collide, and hold what JSON escapes.
var randomStrings = []string{"", "a", "web", "TCP", "<b>&amp;", "é", "line\u2028sep", "tab\t\"q\"", "80"}

// fill sets random fields of m, depth levels deep.
func fill(rng *rand.Rand, m protoreflect.Message, depth int) {
	md := m.Descriptor()
	switch md.FullName() {
	case schema.IntOrStringMessage:
		if rng.IntN(2) == 0 {
			m.Set(md.Fields().ByName("int_val"), protoreflect.ValueOfInt32(int32(rng.IntN(100))))
		} else {
			m.Set(md.Fields().ByName("str_val"), protoreflect.ValueOfString(randomStrings[rng.IntN(len(randomStrings))]))
		}
		return
	case schema.FieldsV1Message:
		raws := []string{`{"f:a":{}}`, `{"f:spec":{"f:x":{}}}`, `not json`, ``}
		m.Set(md.Fields().ByName("raw"), protoreflect.ValueOfBytes([]byte(raws[rng.IntN(len(raws))])))
		return
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if rng.IntN(3) == 0 || (fd.Message() != nil && depth <= 0) {
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for n := rng.IntN(4); n > 0; n-- {
				if fd.Message() != nil {
					item := l.NewElement()
					fill(rng, item.Message(), depth-1)
					l.Append(item)
				} else {
					l.Append(scalar(rng, fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for n := rng.IntN(4); n > 0; n-- {
				key := protoreflect.ValueOfString(randomStrings[rng.IntN(len(randomStrings))]).MapKey()
				if fd.MapValue().Message() != nil {
					v := mp.NewValue()
					fill(rng, v.Message(), depth-1)
					mp.Set(key, v)
				} else {
					mp.Set(key, scalar(rng, fd.MapValue()))
				}
			}
		case fd.Message() != nil:
			fill(rng, m.Mutable(fd).Message(), depth-1)
		default:
			m.Set(fd, scalar(rng, fd))
		}
	}
}

func scalar(rng *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(randomStrings[rng.IntN(len(randomStrings))])
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(rng.IntN(2) == 0)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(rng.IntN(200) - 50))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(rng.Int64N(1<<60) - 1<<59)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(rng.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(rng.Uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(rng.Float32() * 1e3)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(rng.NormFloat64() * 1e9)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(randomStrings[rng.IntN(len(randomStrings))]))
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(rng.IntN(vals.Len())).Number())
	}
	panic("unhandled kind " + fd.Kind().String())
}

// jsonWalk is the general path: the object's JSON form, as the registry decodes it.
func jsonWalk(t *testing.T, obj scheme.Object) (map[string]any, Set) {
	t.Helper()
	enc, err := codec.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(enc, &m); err != nil {
		t.Fatal(err)
	}
	return m, ObjectSet(m, obj.ProtoReflect().Descriptor())
}

// TestMessageSetMatchesJSONWalk checks, on random objects of every kind, that MessageJSON is
// the JSON round trip's value and that a create's
// managed fields from the message (MessageSet, the fast UpdateSet path, appendFieldsV1) are
// byte for byte those of the JSON walk (ObjectSet of the decoded JSON, the general Update,
// json.Marshal).
func TestMessageSetMatchesJSONWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	compared := 0
	for round := 0; round < 60; round++ {
		for _, k := range scheme.Default().Kinds() {
			obj := k.New()
			fill(rng, obj.ProtoReflect(), 6)
			m, want := jsonWalk(t, obj)
			if js, ok := MessageJSON(obj.ProtoReflect()); !ok || !reflect.DeepEqual(js, m) {
				gotEnc, _ := json.Marshal(js)
				wantEnc, _ := json.Marshal(m)
				t.Fatalf("%s: MessageJSON (ok %v) differs from the JSON round trip:\n got %s\nwant %s", k.Kind, ok, gotEnc, wantEnc)
			}
			got, ok := MessageSet(obj.ProtoReflect())
			if !ok {
				t.Fatalf("%s: MessageSet gave up on an object of valid strings", k.Kind)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: sets differ:\n got %s\nwant %s", k.Kind, got.MarshalFieldsV1(), want.MarshalFieldsV1())
			}
			std, _ := json.Marshal(want)
			if !bytes.Equal(want.MarshalFieldsV1(), std) {
				t.Fatalf("%s: FieldsV1 differs from json.Marshal:\n got %s\nwant %s", k.Kind, want.MarshalFieldsV1(), std)
			}
			req := Request{Manager: "m", APIVersion: k.APIVersion(), Time: "2026-01-01T00:00:00Z",
				Type: obj.ProtoReflect().Descriptor()}
			general, gch := update(nil, m, Scope(want, ""), nil, req)
			fast, fch := UpdateSet(nil, nil, got, nil, req)
			if gch != fch || len(general) != len(fast) {
				t.Fatalf("%s: general update gave %d entries (changed %v), fast %d (changed %v)",
					k.Kind, len(general), gch, len(fast), fch)
			}
			for i := range general {
				g, f := general[i], fast[i]
				if !bytes.Equal(g.Fields.MarshalFieldsV1(), f.Fields.MarshalFieldsV1()) || g.Manager != f.Manager ||
					g.Time != f.Time || g.Operation != f.Operation || g.APIVersion != f.APIVersion || g.Subresource != f.Subresource {
					t.Fatalf("%s: entry %d differs:\n general %+v %s\n fast    %+v %s", k.Kind, i,
						g, g.Fields.MarshalFieldsV1(), f, f.Fields.MarshalFieldsV1())
				}
			}
			compared++
		}
	}
	t.Logf("%d random objects compared", compared)
}

// TestMessageSetGivesUpOnInvalidUTF8: JSON turns invalid UTF-8 into U+FFFD, so only the JSON
// walk names such a field as the codec writes it.
func TestMessageSetGivesUpOnInvalidUTF8(t *testing.T) {
	pod := &corev1.Pod{Metadata: &metav1.ObjectMeta{Name: "p", Labels: map[string]string{"bad\xffkey": "v"}}}
	if _, ok := MessageSet(pod.ProtoReflect()); ok {
		t.Fatal("MessageSet accepted a map key that is not UTF-8")
	}
	if _, ok := MessageJSON(pod.ProtoReflect()); ok {
		t.Fatal("MessageJSON accepted a map key that is not UTF-8")
	}
	pod.Metadata.Labels = map[string]string{"good": "v"}
	if _, ok := MessageSet(pod.ProtoReflect()); !ok {
		t.Fatal("MessageSet refused a valid object")
	}
}

// TestUpdateSetWithEntriesInScope: a create that carries in-scope entries takes the general
// path (the create takes its fields from the other managers) and agrees with Update; an entry
// of another scope (status) is kept as it is.
func TestUpdateSetWithEntriesInScope(t *testing.T) {
	o := obj(t, applied)
	r := req("creator")
	before := []Entry{
		{Manager: "other", Operation: OperationApply, APIVersion: "apps/v1", Fields: Set{"f:spec": Set{"f:replicas": Set{}}}},
		{Manager: "kubelet", Operation: OperationUpdate, APIVersion: "apps/v1", Subresource: "status",
			Fields: Set{"f:status": Set{"f:replicas": Set{}}}},
	}
	want, _ := Update(nil, o, before, r)
	set, _ := MessageSet(mustDeployment(t, applied).ProtoReflect())
	got, _ := UpdateSet(nil, o, set, before, r)
	if len(got) != 2 || len(want) != 2 {
		t.Fatalf("entries: got %d, want %d (2: kubelet's status, creator's)", len(got), len(want))
	}
	for i := range want {
		if got[i].Manager != want[i].Manager || !bytes.Equal(got[i].Fields.MarshalFieldsV1(), want[i].Fields.MarshalFieldsV1()) {
			t.Fatalf("entry %d: got %s %s, want %s %s", i, got[i].Manager, got[i].Fields.MarshalFieldsV1(),
				want[i].Manager, want[i].Fields.MarshalFieldsV1())
		}
	}
	if got[1].Manager != "creator" || !got[1].Fields.Has(Path{"f:spec", "f:replicas"}) {
		t.Fatalf("the creator does not own spec.replicas: %+v", got)
	}
}

func mustDeployment(t *testing.T, s string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := codec.Unmarshal([]byte(s), d); err != nil {
		t.Fatal(err)
	}
	return d
}
