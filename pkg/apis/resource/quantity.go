// Package resource implements Kubernetes resource quantities ("100m", "128Mi", "1.5Gi",
// "1e3") for Skiff: parsing, exact arithmetic and comparison, and a canonical string form.
//
// Quantities are exact to the nano unit (1n = 10^-9); finer input is rounded away from zero to
// the next nano, as Kubernetes does. Internally a quantity is an arbitrary precision integer
// count of nano units, so memory sizes such as "64Pi" or "1Ei" never overflow, while the
// int64 accessors (Value, MilliValue) saturate instead of wrapping.
package resource

import (
	"fmt"
	"math"
	"math/big"
	"strings"
)

// Format is how a quantity was written, and how String writes it back.
type Format string

const (
	// DecimalExponent is the "12e6" form.
	DecimalExponent Format = "DecimalExponent"
	// BinarySI is the power-of-two form: Ki, Mi, Gi, Ti, Pi, Ei.
	BinarySI Format = "BinarySI"
	// DecimalSI is the power-of-ten form: n, u, m, "", k, M, G, T, P, E. It is the format of
	// the zero Quantity.
	DecimalSI Format = "DecimalSI"
)

// MaxDigits bounds the magnitude accepted by ParseQuantity: |q| < 10^MaxDigits units. It keeps
// hostile input ("1e999999999") from allocating huge numbers, while being far beyond any real
// resource amount (1Ei is about 1.15e18).
const MaxDigits = 30

// Quantity is a fixed-point amount of a resource. The zero value is 0 (DecimalSI).
//
// A Quantity is immutable: every operation returns a new value. Copies may share the internal
// big.Int, which is never modified after construction. Compare quantities with Cmp or Equal,
// not with ==.
type Quantity struct {
	nanos  *big.Int // the amount × 10^9; nil means zero
	format Format
}

// pow10 returns a fresh 10^n. Big constants are built per call because a package-level
// *big.Int would be mutable shared state.
// pow10 returns 10^n. Small powers, which every ordinary quantity needs, come from a table:
// big.Int.Exp costs microseconds, and the apiserver parses several quantities per pod.
func pow10(n int64) *big.Int {
	if n >= 0 && n < int64(len(smallPow10)) {
		return new(big.Int).SetUint64(smallPow10[n])
	}
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(n), nil)
}

// smallPow10 holds 10^0 .. 10^19, every power that fits a uint64.
var smallPow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
	1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

func newQuantity(n *big.Int, f Format) Quantity {
	if f == "" {
		f = DecimalSI
	}
	if n != nil && n.Sign() == 0 {
		n = nil
	}
	return Quantity{nanos: n, format: f}
}

// NewQuantity returns value units in the given format, e.g. NewQuantity(1<<30, BinarySI) is
// "1Gi".
func NewQuantity(value int64, format Format) Quantity {
	return newQuantity(new(big.Int).Mul(big.NewInt(value), pow10(9)), format)
}

// NewMilliQuantity returns milli thousandths of a unit, e.g. NewMilliQuantity(250, DecimalSI)
// is "250m" (a quarter CPU).
func NewMilliQuantity(milli int64, format Format) Quantity {
	return newQuantity(new(big.Int).Mul(big.NewInt(milli), pow10(6)), format)
}

// suffix describes one allowed suffix: value = number × 10^exp10 × 2^exp2.
type suffix struct {
	exp10  int64
	exp2   uint
	format Format
}

// suffixes is an immutable lookup table; Kubernetes spells micro 'u', not 'µ'.
var suffixes = map[string]suffix{
	"n": {exp10: -9, format: DecimalSI},
	"u": {exp10: -6, format: DecimalSI},
	"m": {exp10: -3, format: DecimalSI},
	"":  {exp10: 0, format: DecimalSI},
	"k": {exp10: 3, format: DecimalSI},
	"M": {exp10: 6, format: DecimalSI},
	"G": {exp10: 9, format: DecimalSI},
	"T": {exp10: 12, format: DecimalSI},
	"P": {exp10: 15, format: DecimalSI},
	"E": {exp10: 18, format: DecimalSI},

	"Ki": {exp2: 10, format: BinarySI},
	"Mi": {exp2: 20, format: BinarySI},
	"Gi": {exp2: 30, format: BinarySI},
	"Ti": {exp2: 40, format: BinarySI},
	"Pi": {exp2: 50, format: BinarySI},
	"Ei": {exp2: 60, format: BinarySI},
}

// parseSuffix interprets everything after the number. "E" alone is exa; "E" or "e" followed
// by a signed integer is a decimal exponent.
func parseSuffix(s string) (suffix, error) {
	if sfx, ok := suffixes[s]; ok {
		return sfx, nil
	}
	if len(s) > 1 && (s[0] == 'e' || s[0] == 'E') {
		exp := s[1:]
		digits := strings.TrimPrefix(strings.TrimPrefix(exp, "+"), "-")
		if digits == "" || len(exp)-len(digits) > 1 || strings.Trim(digits, "0123456789") != "" {
			return suffix{}, fmt.Errorf("invalid exponent %q", s)
		}
		var e int64
		for _, c := range digits {
			e = e*10 + int64(c-'0')
			if e > math.MaxInt32 {
				return suffix{}, fmt.Errorf("exponent %q is out of range", s)
			}
		}
		if exp[0] == '-' {
			e = -e
		}
		return suffix{exp10: e, format: DecimalExponent}, nil
	}
	return suffix{}, fmt.Errorf("unknown suffix %q (want one of n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3)", s)
}

// ParseQuantity parses "<sign><number><suffix>": an optional '+' or '-', digits with at most
// one decimal point ("1", "1.5", ".5", "5."), and an optional suffix (decimal SI n u m k M G T P
// E, binary SI Ki Mi Gi Ti Pi Ei, or an exponent e3 / E-2). Nothing else is allowed, not even
// whitespace. Values finer than 1n round away from zero; magnitudes of 10^MaxDigits or more
// are refused.
func ParseQuantity(s string) (Quantity, error) {
	q, err := parseQuantity(s)
	if err != nil {
		return Quantity{}, fmt.Errorf("invalid quantity %q: %s", s, err)
	}
	return q, nil
}

func parseQuantity(s string) (Quantity, error) {
	if s == "" {
		return Quantity{}, fmt.Errorf("empty string")
	}
	pos := 0
	negative := false
	if s[0] == '+' || s[0] == '-' {
		negative = s[0] == '-'
		pos++
	}
	scanDigits := func() string {
		start := pos
		for pos < len(s) && s[pos] >= '0' && s[pos] <= '9' {
			pos++
		}
		return s[start:pos]
	}
	intPart := scanDigits()
	var fracPart string
	if pos < len(s) && s[pos] == '.' {
		pos++
		fracPart = scanDigits()
	}
	if intPart == "" && fracPart == "" {
		return Quantity{}, fmt.Errorf("expected a number at position %d", min(pos, len(s)))
	}
	sfx, err := parseSuffix(s[pos:])
	if err != nil {
		return Quantity{}, err
	}

	// value = digits × 10^exp10 × 2^exp2, with digits an integer without leading zeros.
	digits := strings.TrimLeft(intPart+fracPart, "0")
	exp10 := sfx.exp10 - int64(len(fracPart))
	if digits == "" {
		return newQuantity(nil, sfx.format), nil
	}
	// Strip trailing zeros into the exponent: cheaper, and "1000000000000000" is small.
	trimmed := strings.TrimRight(digits, "0")
	exp10 += int64(len(digits) - len(trimmed))
	digits = trimmed

	// Cheap lower bound on log10|value| (2^10 > 10^3) to refuse huge values before building
	// them; the exact check follows.
	if int64(len(digits))-1+exp10+3*int64(sfx.exp2/10) >= MaxDigits {
		return Quantity{}, fmt.Errorf("magnitude must be less than 1e%d", MaxDigits)
	}
	// Only the first keepDigits significant digits can influence the result: the rest are worth
	// less than 1n, and (because 10^k is a multiple of 2^exp2 here) any value strictly between
	// two truncations rounds to the same nano. Replacing the dropped tail by a single '1' keeps
	// "was there anything?" for rounding while bounding the work for very long inputs.
	const keepDigits = 100
	if len(digits) > keepDigits {
		exp10 += int64(len(digits) - keepDigits - 1)
		digits = digits[:keepDigits] + "1"
	}

	n, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		return Quantity{}, fmt.Errorf("invalid number") // unreachable: digits are [0-9]+
	}
	n.Lsh(n, sfx.exp2)
	shift := exp10 + 9 // to nano units
	switch {
	case shift >= 0:
		n.Mul(n, pow10(shift))
	case -shift >= int64(len(digits))+19:
		// digits×2^exp2 < 10^len × 2^60 < 10^(len+19) ≤ 10^-shift: less than 1n, but not
		// zero, so it rounds up to 1n.
		n.SetInt64(1)
	default:
		var rem big.Int
		n.QuoRem(n, pow10(-shift), &rem)
		if rem.Sign() != 0 {
			n.Add(n, big.NewInt(1)) // round away from zero (the magnitude is positive here)
		}
	}
	if n.Cmp(pow10(MaxDigits+9)) >= 0 {
		return Quantity{}, fmt.Errorf("magnitude must be less than 1e%d", MaxDigits)
	}
	if negative {
		n.Neg(n)
	}
	return newQuantity(n, sfx.format), nil
}

// MustParse is ParseQuantity for constants and tests; it panics on invalid input.
func MustParse(s string) Quantity {
	q, err := ParseQuantity(s)
	if err != nil {
		panic(err)
	}
	return q
}

func (q Quantity) bigNanos() *big.Int {
	if q.nanos == nil {
		return new(big.Int)
	}
	return q.nanos
}

// Format reports the quantity's format (DecimalSI for the zero value).
func (q Quantity) Format() Format {
	if q.format == "" {
		return DecimalSI
	}
	return q.format
}

// scaled returns nanos/div rounded away from zero and saturated to the int64 range; div is
// 1e9 for whole units and 1e6 for milli-units.
func (q Quantity) scaled(div int64) int64 {
	n := q.bigNanos()
	var quo, rem big.Int
	quo.QuoRem(n, big.NewInt(div), &rem) // truncates toward zero
	if rem.Sign() != 0 {
		quo.Add(&quo, big.NewInt(int64(n.Sign())))
	}
	if !quo.IsInt64() {
		if quo.Sign() > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return quo.Int64()
}

// Value returns the quantity in whole units, rounded away from zero ("1.5" → 2, "100m" → 1,
// "-1.5" → -2), like Kubernetes. Out-of-range values saturate at math.MaxInt64/MinInt64.
func (q Quantity) Value() int64 { return q.scaled(1e9) }

// MilliValue returns the quantity in thousandths of a unit, rounded away from zero and
// saturated like Value.
func (q Quantity) MilliValue() int64 { return q.scaled(1e6) }

// AsInt64 returns the value in whole units if that is exact and fits in an int64.
func (q Quantity) AsInt64() (int64, bool) {
	var quo, rem big.Int
	quo.QuoRem(q.bigNanos(), pow10(9), &rem)
	if rem.Sign() != 0 || !quo.IsInt64() {
		return 0, false
	}
	return quo.Int64(), true
}

// Cmp returns -1, 0 or +1 as q is less than, equal to or greater than y. Formats are ignored:
// "1Ki" equals "1024".
func (q Quantity) Cmp(y Quantity) int { return q.bigNanos().Cmp(y.bigNanos()) }

// Equal reports whether q and y are the same amount (Cmp == 0). go-cmp uses it too.
func (q Quantity) Equal(y Quantity) bool { return q.Cmp(y) == 0 }

// Sign returns -1, 0 or +1.
func (q Quantity) Sign() int { return q.bigNanos().Sign() }

// IsZero reports whether the quantity is zero.
func (q Quantity) IsZero() bool { return q.Sign() == 0 }

// IsNegative reports whether the quantity is below zero. Negative quantities are valid syntax
// (as in Kubernetes); API validation decides where they are allowed.
func (q Quantity) IsNegative() bool { return q.Sign() < 0 }

// Add returns q + y in q's format, or in y's format if q is zero (so that summing into a zero
// Quantity keeps, say, BinarySI for memory), as Kubernetes does.
func (q Quantity) Add(y Quantity) Quantity {
	return newQuantity(new(big.Int).Add(q.bigNanos(), y.bigNanos()), q.resultFormat(y))
}

// Sub returns q - y, with formats chosen as for Add.
func (q Quantity) Sub(y Quantity) Quantity {
	return newQuantity(new(big.Int).Sub(q.bigNanos(), y.bigNanos()), q.resultFormat(y))
}

// Neg returns -q.
func (q Quantity) Neg() Quantity {
	return newQuantity(new(big.Int).Neg(q.bigNanos()), q.format)
}

func (q Quantity) resultFormat(y Quantity) Format {
	if q.IsZero() {
		return y.Format()
	}
	return q.Format()
}

// decimalSuffixes maps a power-of-ten exponent to its DecimalSI suffix (immutable table).
var decimalSuffixes = map[int64]string{-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}

// binarySuffixes is indexed by the power of 1024.
var binarySuffixes = [...]string{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}

// String returns the canonical form, which ParseQuantity reads back as an equal quantity whose
// String is the same again:
//   - DecimalSI and DecimalExponent use the largest exponent that is a multiple of 3 and keeps
//     the mantissa an integer: "0.1" → "100m", "1000" → "1k", "1.5k" → "1500", "1e4" → "10e3";
//   - BinarySI uses the largest power of 1024 that keeps the mantissa an integer: "1.5Gi" →
//     "1536Mi"; amounts that are not a whole multiple of 1Ki are written in DecimalSI so that
//     nothing is rounded ("0.5Ki" → "512", "1.1Ki" → "1126400m", "62.5Ki" → "64k");
//   - zero is always "0".
func (q Quantity) String() string {
	n := q.bigNanos()
	if n.Sign() == 0 {
		return "0"
	}
	format := q.Format()
	abs := new(big.Int).Abs(n)
	sign := ""
	if n.Sign() < 0 {
		sign = "-"
	}
	if format == BinarySI {
		units, rem := new(big.Int).QuoRem(abs, pow10(9), new(big.Int))
		if rem.Sign() == 0 && units.Cmp(big.NewInt(1024)) >= 0 {
			k := 0
			m := new(big.Int)
			for k+1 < len(binarySuffixes) {
				quo, r := new(big.Int).QuoRem(units, big.NewInt(1024), m)
				if r.Sign() != 0 {
					break
				}
				units = quo
				k++
			}
			if k > 0 {
				return sign + units.String() + binarySuffixes[k]
			}
		}
		// Not representable with a binary suffix: fall through to DecimalSI.
		format = DecimalSI
	}

	// abs = mantissa × 10^zeros nanos, i.e. mantissa × 10^(zeros-9) units.
	digits := abs.String()
	trimmed := strings.TrimRight(digits, "0")
	exp := int64(len(digits)-len(trimmed)) - 9 // ≥ -9
	// Round the exponent down to a multiple of 3 (floor, also for negatives).
	e3 := exp - ((exp%3)+3)%3
	if format == DecimalSI && e3 > 18 {
		e3 = 18 // no SI prefix above exa: write "1000E" rather than inventing one
	}
	mantissa := trimmed + strings.Repeat("0", int(exp-e3))
	if format == DecimalExponent {
		if e3 == 0 {
			return sign + mantissa
		}
		return fmt.Sprintf("%s%se%d", sign, mantissa, e3)
	}
	return sign + mantissa + decimalSuffixes[e3]
}

// MarshalText writes the canonical String, so JSON and YAML carry quantities as strings.
func (q Quantity) MarshalText() ([]byte, error) { return []byte(q.String()), nil }

// UnmarshalText parses a quantity (see ParseQuantity).
func (q *Quantity) UnmarshalText(b []byte) error {
	parsed, err := ParseQuantity(string(b))
	if err != nil {
		return err
	}
	*q = parsed
	return nil
}
