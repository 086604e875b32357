package labels

import (
	"slices"
	"strings"
	"testing"

	corev1 "github.com/skiff-project/skiff/pkg/apis/core/v1"
	metav1 "github.com/skiff-project/skiff/pkg/apis/meta/v1"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		want     string // canonical String()
		match    []map[string]string
		notMatch []map[string]string
	}{
		{in: "", want: "", match: []map[string]string{nil, {"a": "b"}}},
		{in: "   ", want: "", match: []map[string]string{nil}},
		{in: "a=b", want: "a=b", match: []map[string]string{{"a": "b"}, {"a": "b", "c": "d"}}, notMatch: []map[string]string{nil, {"a": "c"}}},
		{in: "a==b", want: "a=b", match: []map[string]string{{"a": "b"}}, notMatch: []map[string]string{{"a": "c"}}},
		{in: "a!=b", want: "a!=b", match: []map[string]string{nil, {"a": "c"}}, notMatch: []map[string]string{{"a": "b"}}},
		{in: "a=", want: "a=", match: []map[string]string{{"a": ""}}, notMatch: []map[string]string{nil, {"a": "x"}}},
		{in: "a in (x,y)", want: "a in (x,y)", match: []map[string]string{{"a": "x"}, {"a": "y"}}, notMatch: []map[string]string{nil, {"a": "z"}}},
		{in: "a in (y, x, y)", want: "a in (x,y)"},
		{in: "a notin (z)", want: "a notin (z)", match: []map[string]string{nil, {"a": "x"}}, notMatch: []map[string]string{{"a": "z"}}},
		{in: "a in (,)", want: "a in (,)", match: []map[string]string{{"a": ""}}, notMatch: []map[string]string{{"a": "x"}}},
		{in: "a in (,b)", want: "a in (,b)", match: []map[string]string{{"a": ""}, {"a": "b"}}},
		{in: "a", want: "a", match: []map[string]string{{"a": ""}, {"a": "x"}}, notMatch: []map[string]string{nil}},
		{in: "!a", want: "!a", match: []map[string]string{nil, {"b": "x"}}, notMatch: []map[string]string{{"a": ""}}},
		{in: "n>5", want: "n>5", match: []map[string]string{{"n": "6"}}, notMatch: []map[string]string{nil, {"n": "5"}, {"n": "x"}}},
		{in: "n<5", want: "n<5", match: []map[string]string{{"n": "4"}, {"n": "-1"}}, notMatch: []map[string]string{{"n": "5"}}},
		{
			in:       "a=b,c==d,e!=f,g in (x,y),h notin (z),i,!j",
			want:     "a=b,c=d,e!=f,g in (x,y),h notin (z),i,!j",
			match:    []map[string]string{{"a": "b", "c": "d", "g": "y", "i": ""}},
			notMatch: []map[string]string{{"a": "b", "c": "d", "g": "y", "i": "", "j": "1"}, {"a": "b", "c": "d", "g": "y"}},
		},
		{in: " a = b ,\tc\nin( x ,y ) , ! d ", want: "a=b,c in (x,y),!d"},
		{in: "example.com/app=web", want: "example.com/app=web", match: []map[string]string{{"example.com/app": "web"}}},
		{in: "in in (in,notin)", want: "in in (in,notin)", match: []map[string]string{{"in": "notin"}}},
		{in: "a=in", want: "a=in", match: []map[string]string{{"a": "in"}}},
		{in: "b=1,a=2", want: "a=2,b=1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			sel, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.in, err)
			}
			if got := sel.String(); got != tt.want {
				t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
			if got, want := sel.Empty(), tt.want == ""; got != want {
				t.Errorf("Empty() = %v, want %v", got, want)
			}
			for _, l := range tt.match {
				if !sel.Matches(l) {
					t.Errorf("%q should match %v", tt.in, l)
				}
			}
			for _, l := range tt.notMatch {
				if sel.Matches(l) {
					t.Errorf("%q should not match %v", tt.in, l)
				}
			}
			// Round trip: the canonical form parses back to itself.
			again, err := Parse(sel.String())
			if err != nil {
				t.Fatalf("re-Parse(%q) error: %v", sel.String(), err)
			}
			if again.String() != sel.String() {
				t.Errorf("round trip %q -> %q", sel.String(), again.String())
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"a=b,", "found end of string after ',' at position 3"},
		{",a", "found ',' at position 0, expected: label key or '!'"},
		{"a=b,,c", "found ',' at position 4"},
		{"a b", "found 'b' at position 2, expected: '=', '!=', '==', 'in', 'notin'"},
		{"a in x", "found 'x' at position 5, expected: '('"},
		{"a in (x", "found end of string, expected: ',' or ')'"},
		{"a in (x y)", "found 'y' at position 8, expected: ',' or ')'"},
		{"a in (x))", "found ')' at position 8, expected: ',' or end of string"},
		{"a=b=c", "found '=' at position 3"},
		{"a=(", "found '(' at position 2, expected: label value after '='"},
		{"!", "found end of string, expected: label key after '!'"},
		{"!a=b", "found '=' at position 2, expected: ',' or end of string"},
		{"a>", "expected: integer value after '>'"},
		{"a>x", "the value must be an integer"},
		{"a>-1", "invalid label value \"-1\""},
		{"-a=b", "invalid label key \"-a\""},
		{"a/b/c=d", "invalid label key \"a/b/c\""},
		{"Bad_Prefix/a=b", "prefix part a lowercase RFC 1123 subdomain"},
		{"a=" + strings.Repeat("x", 64), "must be no more than 63 characters"},
		{strings.Repeat("k", 64) + "=v", "name part must be no more than 63 characters"},
		{"a=b_", "invalid label value \"b_\""},
		{"a in (x,-y)", "invalid label value \"-y\""},
		{"app in ()", "found ')' at position 8, expected: label value: the set of values can't be empty"},
		{"app notin ( )", "the set of values can't be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			sel, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want error containing %q", tt.in, sel, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.in, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "\""+tt.in+"\"") {
				t.Errorf("error %q should quote the input", err)
			}
		})
	}
}

func TestEverythingNothing(t *testing.T) {
	if e := Everything(); !e.Empty() || e.String() != "" || !e.Matches(nil) || e.Requirements() != nil {
		t.Errorf("Everything() misbehaves: empty=%v string=%q", e.Empty(), e.String())
	}
	n := Nothing()
	if n.Empty() || n.Matches(nil) || n.Matches(map[string]string{"a": "b"}) {
		t.Errorf("Nothing() should match nothing and not be empty")
	}
	if _, err := Parse(n.String()); err == nil {
		t.Errorf("Nothing().String() = %q must not parse (it would become Everything)", n.String())
	}
}

func TestSelectorFromSet(t *testing.T) {
	sel := SelectorFromSet(map[string]string{"b": "2", "a": "1"})
	if got, want := sel.String(), "a=1,b=2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !sel.Matches(map[string]string{"a": "1", "b": "2", "c": "3"}) || sel.Matches(map[string]string{"a": "1"}) {
		t.Errorf("SelectorFromSet matching is wrong")
	}
	if !SelectorFromSet(nil).Empty() {
		t.Errorf("SelectorFromSet(nil) should be Everything")
	}
	if _, err := ValidatedSelectorFromSet(map[string]string{"ok": "v", "bad key": "v"}); err == nil || !strings.Contains(err.Error(), `"bad key"`) {
		t.Errorf("ValidatedSelectorFromSet error = %v, want one naming \"bad key\"", err)
	}
}

func TestRequirementsAreCopies(t *testing.T) {
	sel, err := Parse("a in (x,y)")
	if err != nil {
		t.Fatal(err)
	}
	reqs := sel.Requirements()
	reqs[0].Values[0] = "mutated"
	if got := sel.String(); got != "a in (x,y)" {
		t.Errorf("mutating Requirements() changed the selector: %q", got)
	}
}

func TestNewRequirement(t *testing.T) {
	tests := []struct {
		key     string
		op      Operator
		vals    []string
		wantErr string
	}{
		{"a", In, []string{"b", "a", "b"}, ""},
		{"a", In, nil, "can't be empty"},
		{"a", Equals, []string{"x", "y"}, "one single value"},
		{"a", NotEquals, nil, "one single value"},
		{"a", Exists, []string{"x"}, "must be empty"},
		{"a", GreaterThan, []string{"1", "2"}, "exactly one value"},
		{"a", LessThan, []string{"1.5"}, "must be an integer"},
		{"a", Operator("~"), nil, "not recognized"},
		{"", Exists, nil, "name part must be non-empty"},
	}
	for _, tt := range tests {
		r, err := NewRequirement(tt.key, tt.op, tt.vals)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("NewRequirement(%q, %q, %q) error: %v", tt.key, tt.op, tt.vals, err)
			} else if tt.op == In && !slices.Equal(r.Values, []string{"a", "b"}) {
				t.Errorf("set values not sorted/deduplicated: %q", r.Values)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("NewRequirement(%q, %q, %q) error = %v, want it to contain %q", tt.key, tt.op, tt.vals, err, tt.wantErr)
		}
	}
}

func TestFromLabelSelector(t *testing.T) {
	tests := []struct {
		name     string
		ls       *metav1.LabelSelector
		want     string
		wantErr  string
		match    []map[string]string
		notMatch []map[string]string
	}{
		{name: "nil matches nothing", ls: nil, want: "<nothing>", notMatch: []map[string]string{nil, {"a": "b"}}},
		{name: "empty matches everything", ls: &metav1.LabelSelector{}, want: "", match: []map[string]string{nil, {"a": "b"}}},
		{
			name: "labels and expressions",
			ls: &metav1.LabelSelector{
				MatchLabels: map[string]string{"app": "web"},
				MatchExpressions: []*metav1.LabelSelectorRequirement{
					{Key: "tier", Operator: "In", Values: []string{"fe", "be"}},
					{Key: "env", Operator: "NotIn", Values: []string{"dev"}},
					{Key: "team", Operator: "Exists"},
					{Key: "canary", Operator: "DoesNotExist"},
				},
			},
			want:     "app=web,!canary,env notin (dev),team,tier in (be,fe)",
			match:    []map[string]string{{"app": "web", "tier": "fe", "team": "x"}},
			notMatch: []map[string]string{{"app": "web", "tier": "fe", "team": "x", "canary": "1"}, {"app": "web", "tier": "fe", "team": "x", "env": "dev"}},
		},
		{name: "bad operator", ls: &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "a", Operator: "in", Values: []string{"x"}}}}, wantErr: `matchExpressions[0]: "in" is not a valid label selector operator`},
		{name: "Gt not allowed", ls: &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "a", Operator: "Gt", Values: []string{"1"}}}}, wantErr: "not a valid label selector operator"},
		{name: "In without values", ls: &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{{Key: "a", Operator: "In"}}}, wantErr: "can't be empty"},
		{name: "bad label value", ls: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "-x"}}, wantErr: `matchLabels: invalid label value "-x"`},
		{name: "nil expression", ls: &metav1.LabelSelector{MatchExpressions: []*metav1.LabelSelectorRequirement{nil}}, wantErr: "must not be null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel, err := FromLabelSelector(tt.ls)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sel.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			for _, l := range tt.match {
				if !sel.Matches(l) {
					t.Errorf("should match %v", l)
				}
			}
			for _, l := range tt.notMatch {
				if sel.Matches(l) {
					t.Errorf("should not match %v", l)
				}
			}
		})
	}
}

func TestNodeSelectorRequirementsAsSelector(t *testing.T) {
	if sel, err := NodeSelectorRequirementsAsSelector(nil); err != nil || sel.Matches(map[string]string{"a": "b"}) {
		t.Errorf("empty node selector term must match nothing (sel=%v, err=%v)", sel, err)
	}
	sel, err := NodeSelectorRequirementsAsSelector([]*corev1.NodeSelectorRequirement{
		{Key: "zone", Operator: "In", Values: []string{"a", "b"}},
		{Key: "cpus", Operator: "Gt", Values: []string{"4"}},
		{Key: "cpus", Operator: "Lt", Values: []string{"64"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sel.String(), "cpus<64,cpus>4,zone in (a,b)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !sel.Matches(map[string]string{"zone": "a", "cpus": "8"}) || sel.Matches(map[string]string{"zone": "a", "cpus": "4"}) || sel.Matches(map[string]string{"zone": "a", "cpus": "many"}) {
		t.Errorf("Gt/Lt matching is wrong")
	}
	if _, err := NodeSelectorRequirementsAsSelector([]*corev1.NodeSelectorRequirement{{Key: "a", Operator: "Foo"}}); err == nil || !strings.Contains(err.Error(), `"Foo"`) {
		t.Errorf("error = %v, want it to name the operator", err)
	}
}

func TestValidation(t *testing.T) {
	type check func(string) []string
	tests := []struct {
		name    string
		fn      check
		value   string
		wantErr string // "" means valid
	}{
		{"qualified simple", IsQualifiedName, "app", ""},
		{"qualified prefixed", IsQualifiedName, "example.com/My_Name-1.x", ""},
		{"qualified single char", IsQualifiedName, "a", ""},
		{"qualified empty", IsQualifiedName, "", "name part must be non-empty"},
		{"qualified empty prefix", IsQualifiedName, "/a", "prefix part must be non-empty"},
		{"qualified uppercase prefix", IsQualifiedName, "Example.com/a", "prefix part a lowercase RFC 1123 subdomain must consist of"},
		{"qualified two slashes", IsQualifiedName, "a/b/c", "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"},
		{"qualified trailing dash", IsQualifiedName, "a-", "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"},
		{"qualified too long", IsQualifiedName, strings.Repeat("a", 64), "name part must be no more than 63 characters"},
		{"qualified 63", IsQualifiedName, strings.Repeat("a", 63), ""},
		{"value empty", IsValidLabelValue, "", ""},
		{"value ok", IsValidLabelValue, "My_Value.1", ""},
		{"value space", IsValidLabelValue, "a b", "a valid label must be an empty string or consist of"},
		{"value slash", IsValidLabelValue, "a/b", "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'"},
		{"value too long", IsValidLabelValue, strings.Repeat("a", 64), "must be no more than 63 characters"},
		{"label ok", IsDNS1123Label, "my-name-1", ""},
		{"label upper", IsDNS1123Label, "My-name", "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"},
		{"label dot", IsDNS1123Label, "a.b", "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'"},
		{"label empty", IsDNS1123Label, "", "a lowercase RFC 1123 label"},
		{"label too long", IsDNS1123Label, strings.Repeat("a", 64), "must be no more than 63 characters"},
		{"subdomain ok", IsDNS1123Subdomain, "example.com", ""},
		{"subdomain label", IsDNS1123Subdomain, "a", ""},
		{"subdomain double dot", IsDNS1123Subdomain, "a..b", "(e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"},
		{"subdomain trailing dot", IsDNS1123Subdomain, "a.", "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"},
		{"subdomain underscore", IsDNS1123Subdomain, "a_b", "RFC 1123 subdomain"},
		{"subdomain too long", IsDNS1123Subdomain, strings.Repeat("a.", 126) + "aa", "must be no more than 253 characters"},
		{"subdomain 253", IsDNS1123Subdomain, strings.Repeat("a.", 126) + "a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.fn(tt.value)
			if tt.wantErr == "" {
				if len(errs) != 0 {
					t.Errorf("%q: unexpected errors %q", tt.value, errs)
				}
				return
			}
			if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.wantErr) }) {
				t.Errorf("%q: errors %q, want one containing %q", tt.value, errs, tt.wantErr)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts prints in a form that
// parses back to the same selector.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "a=b,c==d,e!=f,g in (x,y),h notin (z),i,!j", "a in (,)", "x>1,y<2", "a=", "example.com/a=b", "!", "a in (b c)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(sel.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, sel.String(), err)
		}
		if again.String() != sel.String() {
			t.Fatalf("round trip of %q: %q != %q", s, again.String(), sel.String())
		}
	})
}
