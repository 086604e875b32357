package fields

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		want     string
		match    []Fields
		notMatch []Fields
	}{
		{in: "", want: "", match: []Fields{nil, {"a": "b"}}},
		{in: "a=b", want: "a=b", match: []Fields{{"a": "b"}}, notMatch: []Fields{nil, {"a": "c"}}},
		{in: "a==b", want: "a=b", match: []Fields{{"a": "b"}}, notMatch: []Fields{{"a": "c"}}},
		{in: "a!=b", want: "a!=b", match: []Fields{nil, {"a": "c"}}, notMatch: []Fields{{"a": "b"}}},
		{in: "spec.nodeName=", want: "spec.nodeName=", match: []Fields{nil, {"spec.nodeName": ""}}, notMatch: []Fields{{"spec.nodeName": "n1"}}},
		{in: "spec.nodeName!=", want: "spec.nodeName!=", match: []Fields{{"spec.nodeName": "n1"}}, notMatch: []Fields{nil}},
		{
			in:       "status.phase!=Running,metadata.name==web-0",
			want:     "metadata.name=web-0,status.phase!=Running",
			match:    []Fields{{"metadata.name": "web-0", "status.phase": "Pending"}},
			notMatch: []Fields{{"metadata.name": "web-0", "status.phase": "Running"}, {"metadata.name": "web-1"}},
		},
		{in: "a=b, c=d", want: "a=b,c=d", match: []Fields{{"a": "b", "c": "d"}}},
		{in: "a=b,,c=d,", want: "a=b,c=d"},
		{in: `a=x\,y\=z\\`, want: `a=x\,y\=z\\`, match: []Fields{{"a": `x,y=z\`}}, notMatch: []Fields{{"a": "x"}}},
		{in: "a=!b", want: "a=!b", match: []Fields{{"a": "!b"}}},
		{in: "a= b", want: "a= b", match: []Fields{{"a": " b"}}, notMatch: []Fields{{"a": "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			sel, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.in, err)
			}
			if got := sel.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got, want := sel.Empty(), tt.want == ""; got != want {
				t.Errorf("Empty() = %v, want %v", got, want)
			}
			for _, f := range tt.match {
				if !sel.Matches(f) {
					t.Errorf("%q should match %v", tt.in, f)
				}
			}
			for _, f := range tt.notMatch {
				if sel.Matches(f) {
					t.Errorf("%q should not match %v", tt.in, f)
				}
			}
			again, err := Parse(sel.String())
			if err != nil || again.String() != sel.String() {
				t.Errorf("round trip of %q: %v, %v", sel.String(), again, err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"a", `can't understand "a"`},
		{"a=b,c", `can't understand "c"`},
		{"=b", "empty field name"},
		{"a b=c", `field name "a b" contains whitespace`},
		{"a=b=c", `invalid character '=' in value "b=c"`},
		{"a===b", `invalid character '=' in value "=b"`},
		{`a=b\x`, `invalid escape sequence "\\x"`},
		{`a=b\`, "at the end of value"},
		{"a in (b)", `can't understand "a in (b)"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Parse(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestRequiresExactMatch(t *testing.T) {
	tests := []struct {
		sel       string
		field     string
		wantValue string
		wantFound bool
	}{
		{"spec.nodeName=n1", "spec.nodeName", "n1", true},
		{"spec.nodeName==n1,status.phase=Running", "spec.nodeName", "n1", true},
		{"spec.nodeName=", "spec.nodeName", "", true},
		{"spec.nodeName!=n1", "spec.nodeName", "", false},
		{"status.phase=Running", "spec.nodeName", "", false},
		{"", "spec.nodeName", "", false},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.sel)
		if err != nil {
			t.Fatal(err)
		}
		v, found := sel.RequiresExactMatch(tt.field)
		if v != tt.wantValue || found != tt.wantFound {
			t.Errorf("Parse(%q).RequiresExactMatch(%q) = %q, %v; want %q, %v", tt.sel, tt.field, v, found, tt.wantValue, tt.wantFound)
		}
	}
}

func TestCheck(t *testing.T) {
	allowed := []string{"metadata.name", "metadata.namespace", "spec.nodeName"}
	tests := []struct {
		sel     string
		wantErr []string // substrings; nil means no error
	}{
		{"", nil},
		{"spec.nodeName=n1,metadata.name!=x", nil},
		{"spec.foo=1", []string{"field label not supported: spec.foo"}},
		{"spec.foo=1,spec.nodeName=a,status.bar!=2,spec.foo!=3", []string{"field label not supported: spec.foo", "field label not supported: status.bar"}},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.sel)
		if err != nil {
			t.Fatal(err)
		}
		err = Check(sel, allowed)
		if tt.wantErr == nil {
			if err != nil {
				t.Errorf("Check(%q) = %v, want nil", tt.sel, err)
			}
			continue
		}
		if err == nil {
			t.Fatalf("Check(%q) = nil, want error", tt.sel)
		}
		for _, w := range tt.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Check(%q) = %q, want it to contain %q", tt.sel, err, w)
			}
		}
		if strings.Count(err.Error(), "spec.foo") > 1 {
			t.Errorf("Check(%q) = %q names spec.foo more than once", tt.sel, err)
		}
	}
	if err := Check(nil, allowed); err != nil {
		t.Errorf("Check(nil) = %v", err)
	}
}

func TestConstructors(t *testing.T) {
	if s := Everything(); !s.Empty() || s.String() != "" || !s.Matches(nil) {
		t.Errorf("Everything() misbehaves")
	}
	s := SelectorFromSet(Fields{"b": "x,y", "a": "1"})
	if got, want := s.String(), `a=1,b=x\,y`; got != want {
		t.Errorf("SelectorFromSet String() = %q, want %q", got, want)
	}
	if !s.Matches(Fields{"a": "1", "b": "x,y"}) {
		t.Errorf("SelectorFromSet should match its own set")
	}
	if got := OneTermEqualSelector("spec.nodeName", "n1").String(); got != "spec.nodeName=n1" {
		t.Errorf("OneTermEqualSelector = %q", got)
	}
	if got := OneTermNotEqualSelector("spec.nodeName", "").String(); got != "spec.nodeName!=" {
		t.Errorf("OneTermNotEqualSelector = %q", got)
	}
	reqs := s.Requirements()
	reqs[0].Value = "mutated"
	if s.String() != `a=1,b=x\,y` {
		t.Errorf("mutating Requirements() changed the selector")
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, v := range []string{"", "plain", `a\b`, "a,b", "a=b", `\,=`, `\\`} {
		got, err := UnescapeValue(EscapeValue(v))
		if err != nil || got != v {
			t.Errorf("UnescapeValue(EscapeValue(%q)) = %q, %v", v, got, err)
		}
	}
}

// FuzzParse checks that Parse never panics and that accepted selectors round-trip.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "a=b", `a=x\,y`, "a!=b,c==d", "a=b,", `x\=y=z`, "=", "a==="} {
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
