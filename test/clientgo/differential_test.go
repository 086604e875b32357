package clientgo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	k8sapps "k8s.io/api/apps/v1"
	k8scoord "k8s.io/api/coordination/v1"
	k8score "k8s.io/api/core/v1"
	k8sresource "k8s.io/apimachinery/pkg/api/resource"
	k8sfields "k8s.io/apimachinery/pkg/fields"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	sigsjson "sigs.k8s.io/json"

	appsv1 "github.com/skiff-project/skiff/pkg/apis/apps/v1"
	coordinationv1 "github.com/skiff-project/skiff/pkg/apis/coordination/v1"
	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	"github.com/skiff-project/skiff/pkg/apis/resource"
	"github.com/skiff-project/skiff/pkg/codec"
	"github.com/skiff-project/skiff/pkg/fields"
	"github.com/skiff-project/skiff/pkg/labels"
)

// Differential tests: Skiff's own label-selector, field-selector and quantity parsers and its
// JSON shapes against k8s.io/apimachinery and k8s.io/api on the same inputs: the same
// accept/refuse decisions, the same canonical forms, the same JSON for the same object.

var labelSeeds = []string{
	"", "app", "!app", "app=web", "app==web", "app!=web", "app in (a,b)", "app notin (a, b)", "a,b=c,!d",
	"app in (a),tier=x", "x in ()", "a=", "=a", "a b", "app=web,", ",", "a.b/c=d", "example.com/app=web",
	"a in (b", "a notin b", "a=b=c", "a!b", "a>1", "a<2", "a>b", "-a=b", "a=-b", "a=b c", "app in (a,,b)",
	"A=B", "a_b.c-d=x_y.z-w", strings.Repeat("a", 63) + "=b", strings.Repeat("a", 64) + "=b", "a=" + strings.Repeat("v", 64),
	"a in (x y)", " a = b ", "a=b,a=c", "!a=b", "!!a", "a,,b", "p/q/r=s", "/a=b", "a/=b", "é=b", "a=é",
}

// Skiff's parsers differ from Kubernetes' in a few deliberate, documented ways (the package
// docs of pkg/labels, pkg/fields and pkg/apis/resource, and docs/api.md); the differential
// tests allow exactly those and nothing else:
//
//   - labels: an empty value set ("app in ()") is refused (Kubernetes accepts it and selects
//     nothing); "==" is written "=" in the canonical form, and the set of the empty value "(,)"; a NUL byte is refused (Kubernetes'
//     lexer stops reading there).
//   - fields: whitespace around a field name is ignored, and an empty field name or one with
//     whitespace inside is refused (Kubernetes keeps them; no API field has such a name).
//   - quantities: a quantity without digits ("Gi", "e3", which Kubernetes reads as 0) and one
//     of magnitude 1e30 or more are refused. A plain integer of more than 18 digits is not
//     compared: Kubernetes' parser misreads it ("1000000000000000000000" is 1), Skiff does not.
//   - field selector values with invalid UTF-8 are kept as bytes (Kubernetes writes U+FFFD).

func knownLabelDifference(s string) bool {
	return strings.Contains(strings.ReplaceAll(s, " ", ""), "()")
}

func FuzzLabelSelector(f *testing.F) {
	for _, s := range labelSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours, ourErr := labels.Parse(s)
		theirs, theirErr := k8slabels.Parse(s)
		if (ourErr == nil) != (theirErr == nil) {
			if ourErr != nil && theirErr == nil && (knownLabelDifference(s) || strings.Contains(s, "\x00")) {
				return
			}
			t.Fatalf("labelSelector %q: Skiff %v, Kubernetes %v", s, ourErr, theirErr)
		}
		if ourErr != nil {
			return
		}
		// Skiff writes the set of the empty value "(,)": "()" is the empty set, which it refuses.
		want := strings.ReplaceAll(strings.ReplaceAll(theirs.String(), "==", "="), "()", "(,)")
		if ours.String() != want {
			t.Fatalf("labelSelector %q: canonical %q, Kubernetes %q", s, ours.String(), theirs.String())
		}
		// Both select the same label sets.
		for _, set := range []map[string]string{{}, {"app": "web"}, {"app": "a", "tier": "x"}, {"a": "", "b": "c"}, {"d": "1"}} {
			if ours.Matches(set) != theirs.Matches(k8slabels.Set(set)) {
				t.Fatalf("labelSelector %q on %v: Skiff %v, Kubernetes %v", s, set, ours.Matches(set), theirs.Matches(k8slabels.Set(set)))
			}
		}
	})
}

var fieldSeeds = []string{
	"", "a=b", "a==b", "a!=b", "metadata.name=web", "spec.nodeName=,status.phase!=Running", "a=b,c=d", "a", "=b",
	"a=b=c", `a=b\,c`, `a=b\=c`, `a\=b=c`, "a=b,", ",", "a!b", " a = b ", "a=b c", "status.phase in (a)", `a=\\`, `a=\`,
	"a.b.c=d", "a=é", "a=b,,c=d",
}

func FuzzFieldSelector(f *testing.F) {
	for _, s := range fieldSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours, ourErr := fields.Parse(s)
		theirs, theirErr := k8sfields.ParseSelector(s)
		oddName := false // a field name Skiff refuses or trims on purpose
		if theirErr == nil {
			for _, r := range theirs.Requirements() {
				if strings.TrimSpace(r.Field) == "" || strings.ContainsFunc(strings.TrimSpace(r.Field), unicode.IsSpace) {
					oddName = true
				}
			}
		}
		if (ourErr == nil) != (theirErr == nil) {
			if ourErr != nil && (oddName || strings.Contains(ourErr.Error(), "empty field name") ||
				strings.Contains(ourErr.Error(), "contains whitespace")) {
				return
			}
			if ourErr == nil && blankTermsOnly(s) {
				return // Skiff skips blank terms (" "), as it skips whitespace around names
			}
			t.Fatalf("fieldSelector %q: Skiff %v, Kubernetes %v", s, ourErr, theirErr)
		}
		if ourErr != nil {
			return
		}
		if !utf8.ValidString(s) {
			return // see above
		}
		// The same requirements, field names trimmed.
		var want, got []string
		for _, r := range theirs.Requirements() {
			op := string(r.Operator)
			if op == "==" {
				op = "="
			}
			want = append(want, strings.TrimSpace(r.Field)+op+r.Value)
		}
		for _, r := range ours.Requirements() {
			got = append(got, r.Field+string(r.Operator)+r.Value)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("fieldSelector %q: requirements %q, Kubernetes %q", s, got, want)
		}
		trimmed := false
		for _, r := range theirs.Requirements() {
			trimmed = trimmed || r.Field != strings.TrimSpace(r.Field)
		}
		if want := strings.ReplaceAll(theirs.String(), "==", "="); !trimmed && ours.String() != want {
			t.Fatalf("fieldSelector %q: canonical %q, Kubernetes %q", s, ours.String(), theirs.String())
		}
		for _, set := range []map[string]string{{}, {"a": "b"}, {"metadata.name": "web", "status.phase": "Running"}, {"spec.nodeName": ""}} {
			if ours.Matches(fields.Fields(set)) != theirs.Matches(k8sfields.Set(set)) {
				t.Fatalf("fieldSelector %q on %v: Skiff %v, Kubernetes %v", s, set, ours.Matches(fields.Fields(set)), theirs.Matches(k8sfields.Set(set)))
			}
		}
	})
}

// blankTermsOnly reports whether Kubernetes accepts s once its blank terms are dropped.
func blankTermsOnly(s string) bool {
	var kept []string
	for _, term := range strings.Split(s, ",") {
		if strings.TrimSpace(term) != "" {
			kept = append(kept, term)
		}
	}
	_, err := k8sfields.ParseSelector(strings.Join(kept, ","))
	return err == nil
}

var quantitySeeds = []string{
	"0", "1", "100m", "0.1", ".5", "1.", "1.5Gi", "128Mi", "1Ki", "2Ti", "1Pi", "1Ei", "1k", "1M", "1G", "1T", "1P", "1E",
	"1e3", "1E3", "1e-3", "-1", "+1", "1n", "1u", "1000m", "1500m", "0.001", "1.0001", "12345678901234567890",
	"1Gi ", " 1", "1 Gi", "", "Gi", "1i", "1KI", "1kb", "1e", "e3", "--1", "1..2", "0x10", "1_000", "9223372036854775807",
	"9223372036854775808", "0.0000000001", "1e100", "100000000000000000000000000000Ei", "1e-9", "1e-10", "NaN", "Inf",
}

func FuzzQuantity(f *testing.F) {
	for _, s := range quantitySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours, ourErr := resource.ParseQuantity(s)
		theirs, theirErr := k8sresource.ParseQuantity(s)
		if (ourErr == nil) != (theirErr == nil) {
			noDigits := digitsOnlyInSuffix(s) && theirs.IsZero()
			huge := strings.Contains(ourErr.Error(), "magnitude must be less than 1e30") &&
				(theirs.AsApproximateFloat64() >= 1e30 || theirs.AsApproximateFloat64() <= -1e30 || len(strings.TrimLeft(s, "+-0.")) >= 30)
			if noDigits || huge {
				return // refused on purpose, see above
			}
			t.Fatalf("quantity %q: Skiff %v, Kubernetes %v", s, ourErr, theirErr)
		}
		if ourErr != nil {
			return
		}
		// Kubernetes' String returns the input as parsed; CanonicalizeBytes is the canonical form,
		// which is what it serialises once the object is stored.
		if bigPlainInteger(s) {
			return // Kubernetes misreads these (see above)
		}
		number, suffix := theirs.CanonicalizeBytes(nil)
		if canonical := string(number) + string(suffix); ours.String() != canonical {
			t.Fatalf("quantity %q: canonical %q, Kubernetes %q", s, ours.String(), canonical)
		}
	})
}

// bigPlainInteger reports whether s is an integer of more than 18 digits without a suffix,
// which Kubernetes' parser (apimachinery v0.37) misreads: "1000000000000000000000" becomes 1.
func bigPlainInteger(s string) bool {
	digits := strings.TrimLeft(strings.TrimLeft(s, "+-"), "0")
	return len(digits) > 18 && strings.Trim(digits, "0123456789") == ""
}

// digitsOnlyInSuffix reports whether the only digits of s are in an exponent ("e3"), i.e. the
// number itself has none.
func digitsOnlyInSuffix(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return s == "" || !(s[0] >= '0' && s[0] <= '9' || s[0] == '.' && len(s) > 1 && s[1] >= '0' && s[1] <= '9')
}

// filler sets every field of a Skiff message to distinct values that Kubernetes' types can
// hold: times are RFC 3339 to the second (MicroTime to the microsecond), quantities and
// int-or-strings valid, so that the objects mean the same in both.
type filler struct {
	n    int
	seed int
}

func (f *filler) fill(m protoreflect.Message) {
	md := m.Descriptor()
	switch md.FullName() {
	case "skiff.meta.v1.IntOrString":
		f.n++
		if (f.n+f.seed)%2 == 0 {
			m.Set(md.Fields().ByName("int_val"), protoreflect.ValueOfInt32(int32(f.n)))
		} else {
			m.Set(md.Fields().ByName("str_val"), protoreflect.ValueOfString(fmt.Sprintf("port-%d", f.n)))
		}
		return
	case "skiff.meta.v1.FieldsV1":
		m.Set(md.Fields().ByName("raw"), protoreflect.ValueOfBytes([]byte(fmt.Sprintf(`{"f:n%d":{}}`, f.n))))
		return
	}
	fieldsList := md.Fields()
	for i := 0; i < fieldsList.Len(); i++ {
		fd := fieldsList.Get(i)
		f.n++
		if (f.n+f.seed)%7 == 0 {
			continue // some fields unset
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < 1+(f.n+f.seed)%2; j++ {
				if fd.Message() != nil {
					v := l.NewElement()
					f.fill(v.Message())
					l.Append(v)
				} else {
					l.Append(f.scalar(fd))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for j := 0; j < 2; j++ {
				k := protoreflect.ValueOfString(fmt.Sprintf("k%d", f.n+j)).MapKey()
				mp.Set(k, f.mapValue(fd))
			}
		case fd.Message() != nil:
			f.fill(m.Mutable(fd).Message())
		default:
			m.Set(fd, f.scalar(fd))
		}
	}
}

func (f *filler) mapValue(fd protoreflect.FieldDescriptor) protoreflect.Value {
	f.n++
	switch fd.FullName() {
	case "skiff.core.v1.ResourceRequirements.limits", "skiff.core.v1.ResourceRequirements.requests",
		"skiff.core.v1.NodeStatus.capacity", "skiff.core.v1.NodeStatus.allocatable":
		return protoreflect.ValueOfString([]string{"100m", "128Mi", "2", "1500m", "1Gi"}[f.n%5])
	}
	return protoreflect.ValueOfString(fmt.Sprintf("v%d <&>é", f.n))
}

func (f *filler) scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	f.n++
	switch fd.Kind() {
	case protoreflect.StringKind:
		switch {
		case fd.FullName() == "skiff.core.v1.EmptyDirVolumeSource.size_limit":
			return protoreflect.ValueOfString("1Gi")
		case strings.HasSuffix(string(fd.FullName()), "LeaseSpec.acquire_time"), strings.HasSuffix(string(fd.FullName()), "LeaseSpec.renew_time"),
			fd.FullName() == "skiff.core.v1.Event.event_time":
			return protoreflect.ValueOfString(fmt.Sprintf("2025-05-01T12:00:%02d.%06dZ", f.n%60, f.n))
		case codecIsTime(fd):
			return protoreflect.ValueOfString(fmt.Sprintf("2025-05-01T12:%02d:%02dZ", f.n%60, (f.n*7)%60))
		}
		return protoreflect.ValueOfString(fmt.Sprintf("v%d <&> \"q\" é", f.n))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(int32(f.n * 3))
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(int64(1)<<40 + int64(f.n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(fmt.Sprintf("b%d", f.n)))
	}
	panic(fmt.Sprintf("filler: unhandled kind %v of %s", fd.Kind(), fd.FullName()))
}

func codecIsTime(fd protoreflect.FieldDescriptor) bool {
	name := string(fd.Name())
	return strings.HasSuffix(name, "_timestamp") || strings.HasSuffix(name, "_time") || name == "started_at" ||
		name == "finished_at" || name == "time_added" || fd.FullName() == "skiff.meta.v1.ManagedFieldsEntry.time"
}

// pair is one Skiff kind and the Kubernetes type of the same object.
type pair struct {
	skiff func() proto.Message
	k8s   func() any
}

var pairs = []pair{
	{func() proto.Message { return &corev1.Pod{} }, func() any { return &k8score.Pod{} }},
	{func() proto.Message { return &corev1.Service{} }, func() any { return &k8score.Service{} }},
	{func() proto.Message { return &corev1.Node{} }, func() any { return &k8score.Node{} }},
	{func() proto.Message { return &corev1.Namespace{} }, func() any { return &k8score.Namespace{} }},
	{func() proto.Message { return &corev1.Endpoints{} }, func() any { return &k8score.Endpoints{} }},
	{func() proto.Message { return &corev1.Event{} }, func() any { return &k8score.Event{} }},
	{func() proto.Message { return &appsv1.Deployment{} }, func() any { return &k8sapps.Deployment{} }},
	{func() proto.Message { return &appsv1.ReplicaSet{} }, func() any { return &k8sapps.ReplicaSet{} }},
	{func() proto.Message { return &coordinationv1.Lease{} }, func() any { return &k8scoord.Lease{} }},
}

// FuzzJSONShapes fills every field Skiff models, then checks that Kubernetes' own types
// read Skiff's JSON strictly (no field Kubernetes does not have, no type it refuses), that
// Kubernetes writes back the same JSON (up to the empty values Kubernetes always writes),
// and that Skiff reads Kubernetes' JSON back to the same object.
func FuzzJSONShapes(f *testing.F) {
	for i := range 6 {
		f.Add(i, uint8(i))
	}
	f.Fuzz(func(t *testing.T, seed int, which uint8) {
		p := pairs[int(which)%len(pairs)]
		obj := p.skiff()
		(&filler{seed: seed % 1000}).fill(obj.ProtoReflect())
		ours, err := codec.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		k8sObj := p.k8s()
		strictErrs, err := sigsjson.UnmarshalStrict(ours, k8sObj)
		if err != nil {
			t.Fatalf("Kubernetes cannot read Skiff's %T: %v\n%s", obj, err, ours)
		}
		if len(strictErrs) > 0 {
			t.Fatalf("Kubernetes' strict decoding of Skiff's %T: %v", obj, strictErrs)
		}
		theirs, err := json.Marshal(k8sObj)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := normalize(t, ours), normalize(t, theirs); !reflect.DeepEqual(a, b) {
			t.Fatalf("%T: Skiff's JSON and Kubernetes' differ:\n Skiff      %s\n Kubernetes %s", obj, mustJSON(a), mustJSON(b))
		}
		back := p.skiff()
		if err := codec.Unmarshal(theirs, back); err != nil {
			t.Fatalf("Skiff cannot read Kubernetes' %T: %v", obj, err)
		}
		again, err := codec.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		// Kubernetes writes empty structs (status: {}) that Skiff then holds as set but empty:
		// the same object, compared by its JSON without empty values.
		if a, b := normalize(t, again), normalize(t, ours); !reflect.DeepEqual(a, b) {
			t.Fatalf("%T: Kubernetes' JSON read back differs:\n got %s\nwant %s", obj, mustJSON(a), mustJSON(b))
		}
	})
}

// normalize decodes JSON dropping the empty values Kubernetes writes whatever is set
// (creationTimestamp: null, empty structs such as resources: {}, zero numbers and bools of
// non-pointer fields that Skiff writes only when set).
func normalize(t *testing.T, data []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return prune(v)
}

func prune(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			if p := prune(val); p != nil {
				out[k] = p
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []any:
		out := make([]any, 0, len(x))
		for _, val := range x {
			p := prune(val)
			if p == nil {
				p = map[string]any{}
			}
			out = append(out, p)
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case string:
		if x == "" {
			return nil
		}
	case json.Number:
		if x == "0" {
			return nil
		}
	case bool:
		if !x {
			return nil
		}
	}
	return v
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
