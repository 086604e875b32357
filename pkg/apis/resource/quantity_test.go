package resource

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in        string
		wantMilli int64
		wantValue int64
		wantStr   string
		format    Format
	}{
		{"0", 0, 0, "0", DecimalSI},
		{"-0", 0, 0, "0", DecimalSI},
		{"0Gi", 0, 0, "0", BinarySI},
		{"100m", 100, 1, "100m", DecimalSI},
		{"1", 1000, 1, "1", DecimalSI},
		{"+1", 1000, 1, "1", DecimalSI},
		{"0.1", 100, 1, "100m", DecimalSI},
		{".5", 500, 1, "500m", DecimalSI},
		{"5.", 5000, 5, "5", DecimalSI},
		{"0.5", 500, 1, "500m", DecimalSI},
		{"2.5", 2500, 3, "2500m", DecimalSI},
		{"1k", 1_000_000, 1000, "1k", DecimalSI},
		{"1000", 1_000_000, 1000, "1k", DecimalSI},
		{"1.5k", 1_500_000, 1500, "1500", DecimalSI},
		{"12M", 12_000_000_000, 12_000_000, "12M", DecimalSI},
		{"1G", 1e12, 1e9, "1G", DecimalSI},
		{"1e3", 1_000_000, 1000, "1e3", DecimalExponent},
		{"1E3", 1_000_000, 1000, "1e3", DecimalExponent},
		{"12E6", 12e9, 12e6, "12e6", DecimalExponent},
		{"1e4", 1e7, 1e4, "10e3", DecimalExponent},
		{"1.5e3", 1_500_000, 1500, "1500", DecimalExponent},
		{"1e-3", 1, 1, "1e-3", DecimalExponent},
		{"1e+3", 1_000_000, 1000, "1e3", DecimalExponent},
		{"1E", math.MaxInt64, 1e18, "1E", DecimalSI}, // MilliValue saturates
		{"1Ki", 1024 * 1000, 1024, "1Ki", BinarySI},
		{"128Mi", 134217728 * 1000, 134217728, "128Mi", BinarySI},
		{"1.5Gi", 1610612736 * 1000, 1610612736, "1536Mi", BinarySI},
		{"0.5Gi", 536870912 * 1000, 536870912, "512Mi", BinarySI},
		{"0.5Ki", 512 * 1000, 512, "512", BinarySI},
		{"1.1Ki", 1126400, 1127, "1126400m", BinarySI},
		{"1536", 1536 * 1000, 1536, "1536", DecimalSI},
		{"62.5Ki", 64000 * 1000, 64000, "64k", BinarySI}, // not a multiple of 1Ki: DecimalSI
		{"1000Ki", 1024000 * 1000, 1024000, "1000Ki", BinarySI},
		{"1024Ki", 1 << 20 * 1000, 1 << 20, "1Mi", BinarySI},
		{"1Ei", math.MaxInt64, 1 << 60, "1Ei", BinarySI},
		{"64Pi", math.MaxInt64, 1 << 56, "64Pi", BinarySI},
		{"7Ei", math.MaxInt64, 7 << 60, "7Ei", BinarySI},
		{"2048Ei", math.MaxInt64, math.MaxInt64, "2048Ei", BinarySI},
		{"-1Gi", -1 << 30 * 1000, -1 << 30, "-1Gi", BinarySI},
		{"-100m", -100, -1, "-100m", DecimalSI},
		{"-1.5", -1500, -2, "-1500m", DecimalSI},
		{"1n", 1, 1, "1n", DecimalSI},
		{"1u", 1, 1, "1u", DecimalSI},
		{"1500u", 2, 1, "1500u", DecimalSI},
		{"1e-10", 1, 1, "1e-9", DecimalExponent},     // finer than 1n rounds up
		{"-1e-10", -1, -1, "-1e-9", DecimalExponent}, // ... away from zero
		{"0.0000000001", 1, 1, "1n", DecimalSI},
		{"1.0000000001", 1001, 2, "1000000001n", DecimalSI},
		{"1000E", math.MaxInt64, math.MaxInt64, "1000E", DecimalSI},
		{"1e21", math.MaxInt64, math.MaxInt64, "1e21", DecimalExponent},
		{"0e999999999", 0, 0, "0", DecimalExponent},
		{"1e-999999999", 1, 1, "1e-9", DecimalExponent},
		{"000123.4500", 123450, 124, "123450m", DecimalSI},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			q, err := ParseQuantity(tt.in)
			if err != nil {
				t.Fatalf("ParseQuantity(%q) error: %v", tt.in, err)
			}
			if got := q.MilliValue(); got != tt.wantMilli {
				t.Errorf("MilliValue() = %d, want %d", got, tt.wantMilli)
			}
			if got := q.Value(); got != tt.wantValue {
				t.Errorf("Value() = %d, want %d", got, tt.wantValue)
			}
			if got := q.String(); got != tt.wantStr {
				t.Errorf("String() = %q, want %q", got, tt.wantStr)
			}
			if got := q.Format(); got != tt.format {
				t.Errorf("Format() = %q, want %q", got, tt.format)
			}
			again, err := ParseQuantity(q.String())
			if err != nil || again.Cmp(q) != 0 {
				t.Errorf("round trip via %q: %v (err %v)", q.String(), again, err)
			}
		})
	}
}

func TestParseQuantityErrors(t *testing.T) {
	tests := []struct{ in, wantErr string }{
		{"", "empty string"},
		{"1.2.3", `unknown suffix ".3"`},
		{"10MB", `unknown suffix "MB"`},
		{"abc", "expected a number at position 0"},
		{"1 Gi", `unknown suffix " Gi"`},
		{" 1", "expected a number"},
		{"1 ", `unknown suffix " "`},
		{".", "expected a number"},
		{"+", "expected a number"},
		{"-", "expected a number"},
		{"Gi", "expected a number"},
		{"--1", "expected a number at position 1"},
		{"1ki", `unknown suffix "ki"`},
		{"1K", `unknown suffix "K"`},
		{"1i", `unknown suffix "i"`},
		{"1e", `unknown suffix "e"`},
		{"1e1.5", `invalid exponent "e1.5"`},
		{"1e+", `invalid exponent "e+"`},
		{"1e+-3", `invalid exponent "e+-3"`},
		{"1e3Ki", `invalid exponent "e3Ki"`},
		{"1Ki1", `unknown suffix "Ki1"`},
		{"1e99999999999", "out of range"},
		{"1e30", "magnitude must be less than 1e30"},
		{"1000000000000000000000000000000", "magnitude must be less than 1e30"},
		{"1000000000000Ei", "magnitude must be less than 1e30"},
		{"1µ", `unknown suffix "µ"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			q, err := ParseQuantity(tt.in)
			if err == nil {
				t.Fatalf("ParseQuantity(%q) = %v, want error", tt.in, q)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), `invalid quantity "`+tt.in+`"`) {
				t.Errorf("error = %q should quote the input", err)
			}
		})
	}
	// The limit is exact: just below it parses, rounding up onto it does not.
	if _, err := ParseQuantity("999999999999999999999999999999.999999999"); err != nil {
		t.Errorf("1e30-1n should parse: %v", err)
	}
	if _, err := ParseQuantity("999999999999999999999999999999.9999999991"); err == nil {
		t.Errorf("a value rounding up to 1e30 units should be refused")
	}
}

func TestLongInputRounding(t *testing.T) {
	// Hundreds of digits past the nano precision must not be lost for rounding purposes.
	long := "1." + strings.Repeat("0", 300) + "1"
	if got := MustParse(long).String(); got != "1000000001n" {
		t.Errorf("%s... = %q, want 1000000001n", long[:10], got)
	}
	exact := "1." + strings.Repeat("0", 300)
	if got := MustParse(exact).String(); got != "1" {
		t.Errorf("1.000... = %q, want 1", got)
	}
	// 0.999...9 (many nines) Ki: just under 1024, must round up to exactly 1Ki.
	nines := "0." + strings.Repeat("9", 250) + "Ki"
	if got := MustParse(nines).String(); got != "1Ki" {
		t.Errorf("0.999...Ki = %q, want 1Ki", got)
	}
}

func TestCmp(t *testing.T) {
	ordered := []string{"-1Ei", "-1Gi", "-1", "-1n", "0", "1n", "1m", "999m", "1", "1000m", "1k", "1Ki", "1M", "1Mi", "1G", "1Gi", "1e12", "1Ti", "1Ei", "2048Ei"}
	for i := range ordered {
		for j := range ordered {
			a, b := MustParse(ordered[i]), MustParse(ordered[j])
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			// "1" and "1000m" are equal.
			if (ordered[i] == "1" && ordered[j] == "1000m") || (ordered[i] == "1000m" && ordered[j] == "1") {
				want = 0
			}
			if got := a.Cmp(b); got != want {
				t.Errorf("Cmp(%s, %s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	if !MustParse("1Ki").Equal(MustParse("1024")) || MustParse("1Ki").Equal(MustParse("1k")) {
		t.Errorf("Equal is wrong")
	}
}

func TestArithmetic(t *testing.T) {
	tests := []struct {
		a, b      string
		wantAdd   string
		wantSub   string
		addFormat Format
	}{
		{"100m", "200m", "300m", "-100m", DecimalSI},
		{"1Gi", "512Mi", "1536Mi", "512Mi", BinarySI},
		{"1", "500m", "1500m", "500m", DecimalSI},
		{"0", "1Gi", "1Gi", "-1Gi", BinarySI}, // a zero adopts the other format
		{"64Pi", "64Pi", "128Pi", "0", BinarySI},
		{"1Ei", "7Ei", "8Ei", "-6Ei", BinarySI}, // beyond int64: no overflow
		{"1e3", "1", "1001", "999", DecimalExponent},
	}
	for _, tt := range tests {
		a, b := MustParse(tt.a), MustParse(tt.b)
		sum, diff := a.Add(b), a.Sub(b)
		if sum.String() != tt.wantAdd || sum.Format() != tt.addFormat {
			t.Errorf("%s + %s = %s (%s), want %s (%s)", tt.a, tt.b, sum, sum.Format(), tt.wantAdd, tt.addFormat)
		}
		if diff.String() != tt.wantSub {
			t.Errorf("%s - %s = %s, want %s", tt.a, tt.b, diff, tt.wantSub)
		}
		if a.String() != MustParse(tt.a).String() || b.String() != MustParse(tt.b).String() {
			t.Errorf("Add/Sub mutated an operand")
		}
	}
	var total Quantity // the zero value is usable as an accumulator
	for _, s := range []string{"128Mi", "128Mi", "256Mi"} {
		total = total.Add(MustParse(s))
	}
	if total.String() != "512Mi" {
		t.Errorf("sum = %s, want 512Mi", total)
	}
	if !MustParse("-1m").IsNegative() || MustParse("0").IsNegative() || !MustParse("0Ki").IsZero() || MustParse("1n").IsZero() {
		t.Errorf("IsNegative/IsZero wrong")
	}
	if got := MustParse("1Gi").Neg().String(); got != "-1Gi" {
		t.Errorf("Neg = %s", got)
	}
	if (Quantity{}).String() != "0" || !(Quantity{}).IsZero() || (Quantity{}).Format() != DecimalSI {
		t.Errorf("zero Quantity misbehaves")
	}
}

func TestConstructors(t *testing.T) {
	tests := []struct {
		q    Quantity
		want string
	}{
		{NewQuantity(1<<30, BinarySI), "1Gi"},
		{NewQuantity(1000, DecimalSI), "1k"},
		{NewQuantity(5, ""), "5"},
		{NewMilliQuantity(250, DecimalSI), "250m"},
		{NewMilliQuantity(-1500, DecimalSI), "-1500m"},
		{NewQuantity(math.MinInt64, DecimalSI), "-9223372036854775808"},
	}
	for _, tt := range tests {
		if got := tt.q.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if v, ok := MustParse("2Gi").AsInt64(); !ok || v != 2<<30 {
		t.Errorf("AsInt64(2Gi) = %d, %v", v, ok)
	}
	if _, ok := MustParse("1500m").AsInt64(); ok {
		t.Errorf("AsInt64(1500m) should not be exact")
	}
	if _, ok := MustParse("8Ei").AsInt64(); ok {
		t.Errorf("AsInt64(8Ei) should overflow")
	}
	if got := MustParse("-8Ei").Value(); got != math.MinInt64 {
		t.Errorf("Value(-8Ei) = %d, want saturation at MinInt64", got)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Errorf("MustParse(\"bogus\") did not panic")
		}
	}()
	MustParse("bogus")
}

func TestJSON(t *testing.T) {
	in := map[string]Quantity{"cpu": MustParse("0.5"), "memory": MustParse("1.5Gi")}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"cpu":"500m","memory":"1536Mi"}`; got != want {
		t.Errorf("json = %s, want %s", got, want)
	}
	var out map[string]Quantity
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !out["cpu"].Equal(in["cpu"]) || !out["memory"].Equal(in["memory"]) {
		t.Errorf("json round trip: %v", out)
	}
	if err := json.Unmarshal([]byte(`{"cpu":"1 core"}`), &out); err == nil || !strings.Contains(err.Error(), `"1 core"`) {
		t.Errorf("bad json quantity error = %v", err)
	}
}

func TestParseResourceList(t *testing.T) {
	rl, err := ParseResourceList(map[string]string{"cpu": "250m", "memory": "64Mi", "pods": "110"})
	if err != nil {
		t.Fatal(err)
	}
	if rl["cpu"].MilliValue() != 250 || rl["memory"].Value() != 64<<20 || rl["pods"].Value() != 110 {
		t.Errorf("ParseResourceList = %v", rl)
	}
	if got := rl.StringMap(); got["cpu"] != "250m" || got["memory"] != "64Mi" || got["pods"] != "110" || len(got) != 3 {
		t.Errorf("StringMap = %v", got)
	}
	_, err = ParseResourceList(map[string]string{"cpu": "1", "memory": "10MB", "storage": "x"})
	if err == nil || !strings.HasPrefix(err.Error(), `resource "memory": invalid quantity "10MB"`) {
		t.Errorf("error = %v, want it to name resource \"memory\" (first bad key in order)", err)
	}
	if rl, err := ParseResourceList(nil); rl != nil || err != nil {
		t.Errorf("ParseResourceList(nil) = %v, %v", rl, err)
	}
}

// FuzzParseQuantity checks that ParseQuantity never panics, that String of any accepted
// quantity parses back to an equal quantity, and that String is a fixed point.
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"0", "100m", "1", "128Mi", "1.5Gi", "1k", "1e3", "0.1", "2.5", "1Ki", "-1.5", "1e-10", ".5", "5.", "12E6", "1E", "64Pi", "1Ei", "1.1Ki", "1000E", "1e21", "62.5Ki", "1.2.3", "10MB", "", "1 Gi", "+.5e-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuantity(s)
		if err != nil {
			return
		}
		str := q.String()
		again, err := ParseQuantity(str)
		if err != nil {
			t.Fatalf("ParseQuantity(%q).String() = %q does not parse: %v", s, str, err)
		}
		if again.Cmp(q) != 0 {
			t.Fatalf("ParseQuantity(%q) = %s, re-parsed as %s", s, str, again)
		}
		if again.String() != str {
			t.Fatalf("String not canonical for %q: %q then %q", s, str, again.String())
		}
		_, _ = q.Value(), q.MilliValue()
	})
}
