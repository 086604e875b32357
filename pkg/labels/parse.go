package labels

import (
	"fmt"
	"strings"
)

// The parser follows the grammar of k8s.io/apimachinery/pkg/labels:
//
//	<selector>       ::= "" | <requirement> { "," <requirement> }
//	<requirement>    ::= [ "!" ] KEY | KEY <exact-op> [ VALUE ] | KEY <set-op> "(" <values> ")" | KEY <cmp-op> VALUE
//	<exact-op>       ::= "=" | "==" | "!="
//	<set-op>         ::= "in" | "notin"
//	<cmp-op>         ::= ">" | "<"
//	<values>         ::= [ VALUE ] { "," [ VALUE ] }
//
// Whitespace between tokens is ignored. "in" and "notin" are only keywords where an operator
// is expected, so they remain usable as keys and values.

type tokenKind int

const (
	tokEOS tokenKind = iota
	tokIdent
	tokComma
	tokOpenParen
	tokCloseParen
	tokEquals
	tokDoubleEquals
	tokNotEquals
	tokBang
	tokGreater
	tokLess
)

type token struct {
	kind tokenKind
	lit  string
	pos  int // byte offset in the input, for error messages
}

// describe renders a token for error messages; the end of input has no literal of its own.
func (t token) describe() string {
	if t.kind == tokEOS {
		return "end of string"
	}
	return fmt.Sprintf("'%s' at position %d", t.lit, t.pos)
}

func isWhitespace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isSpecial(c byte) bool {
	switch c {
	case '=', '!', '(', ')', ',', '>', '<':
		return true
	}
	return false
}

// lex splits the input into tokens. Identifiers are maximal runs of bytes that are neither
// whitespace nor special symbols; their validity is checked later by NewRequirement, which
// gives better messages than a lexer could.
func lex(s string) []token {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case isWhitespace(c):
			i++
		case isSpecial(c):
			t := token{pos: i, lit: s[i : i+1]}
			next := byte(0)
			if i+1 < len(s) {
				next = s[i+1]
			}
			switch c {
			case '=':
				t.kind = tokEquals
				if next == '=' {
					t.kind, t.lit = tokDoubleEquals, "=="
				}
			case '!':
				t.kind = tokBang
				if next == '=' {
					t.kind, t.lit = tokNotEquals, "!="
				}
			case '(':
				t.kind = tokOpenParen
			case ')':
				t.kind = tokCloseParen
			case ',':
				t.kind = tokComma
			case '>':
				t.kind = tokGreater
			case '<':
				t.kind = tokLess
			}
			toks = append(toks, t)
			i += len(t.lit)
		default:
			start := i
			for i < len(s) && !isWhitespace(s[i]) && !isSpecial(s[i]) {
				i++
			}
			toks = append(toks, token{kind: tokIdent, lit: s[start:i], pos: start})
		}
	}
	return append(toks, token{kind: tokEOS, pos: len(s)})
}

type parser struct {
	input string
	toks  []token
	pos   int
}

func (p *parser) peek() token { return p.toks[p.pos] }

func (p *parser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOS {
		p.pos++
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("unable to parse label selector %q: %s", p.input, fmt.Sprintf(format, args...))
}

// Parse parses a label selector string such as "app=web,tier in (fe,be),!canary,rev>3".
// The empty (or all-whitespace) string is Everything. Requirements are validated with
// NewRequirement, so keys and values follow the Kubernetes label rules. The returned
// selector's String is canonical: requirements sorted by key, "==" written as "=", set values
// sorted and de-duplicated.
func Parse(s string) (Selector, error) {
	p := &parser{input: s, toks: lex(s)}
	var reqs []Requirement
	if p.peek().kind == tokEOS {
		return Everything(), nil
	}
	for {
		r, err := p.parseRequirement()
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, r)
		switch t := p.next(); t.kind {
		case tokEOS:
			return newInternalSelector(reqs), nil
		case tokComma:
			if p.peek().kind == tokEOS {
				return nil, p.errorf("found end of string after ',' at position %d, expected: requirement", t.pos)
			}
		default:
			return nil, p.errorf("found %s, expected: ',' or end of string", t.describe())
		}
	}
}

func (p *parser) parseRequirement() (Requirement, error) {
	t := p.next()
	switch t.kind {
	case tokBang:
		k := p.next()
		if k.kind != tokIdent {
			return Requirement{}, p.errorf("found %s, expected: label key after '!'", k.describe())
		}
		return p.build(k, DoesNotExist, nil)
	case tokIdent:
	default:
		return Requirement{}, p.errorf("found %s, expected: label key or '!'", t.describe())
	}
	key := t

	op := p.peek()
	switch op.kind {
	case tokEOS, tokComma:
		return p.build(key, Exists, nil)
	case tokEquals, tokDoubleEquals, tokNotEquals:
		p.next()
		operator := Equals // "==" is normalised to "=" for a canonical String.
		if op.kind == tokNotEquals {
			operator = NotEquals
		}
		// "key=" (followed by ',' or the end) means the empty value, as in Kubernetes.
		v := p.peek()
		switch v.kind {
		case tokIdent:
			p.next()
			return p.build(key, operator, []string{v.lit})
		case tokEOS, tokComma:
			return p.build(key, operator, []string{""})
		default:
			return Requirement{}, p.errorf("found %s, expected: label value after '%s'", v.describe(), op.lit)
		}
	case tokGreater, tokLess:
		p.next()
		operator := GreaterThan
		if op.kind == tokLess {
			operator = LessThan
		}
		v := p.next()
		if v.kind != tokIdent {
			return Requirement{}, p.errorf("found %s, expected: integer value after '%s'", v.describe(), op.lit)
		}
		return p.build(key, operator, []string{v.lit})
	case tokIdent:
		if op.lit == string(In) || op.lit == string(NotIn) {
			p.next()
			vals, err := p.parseValues()
			if err != nil {
				return Requirement{}, err
			}
			return p.build(key, Operator(op.lit), vals)
		}
	}
	return Requirement{}, p.errorf("found %s, expected: '=', '!=', '==', 'in', 'notin', '>', '<', ',' or end of string", op.describe())
}

// parseValues parses "(a,b,...)". An omitted value between commas is the empty string, so
// "(,a)" is {"", "a"}, but "()" is refused: a set written with no value at all is a mistake
// (often an empty variable in a script), not a request for objects whose label is empty.
func (p *parser) parseValues() ([]string, error) {
	if t := p.next(); t.kind != tokOpenParen {
		return nil, p.errorf("found %s, expected: '('", t.describe())
	}
	var vals []string
	expectValue := true // at the start and after each ','
	for {
		t := p.next()
		switch {
		case t.kind == tokIdent && expectValue:
			vals = append(vals, t.lit)
			expectValue = false
		case t.kind == tokComma:
			if expectValue {
				vals = append(vals, "")
			}
			expectValue = true
		case t.kind == tokCloseParen:
			if len(vals) == 0 && expectValue {
				return nil, p.errorf("found %s, expected: label value: the set of values can't be empty", t.describe())
			}
			if expectValue {
				vals = append(vals, "")
			}
			return vals, nil
		case expectValue:
			return nil, p.errorf("found %s, expected: label value, ',' or ')'", t.describe())
		default:
			return nil, p.errorf("found %s, expected: ',' or ')'", t.describe())
		}
	}
}

// build validates the requirement and prefixes errors with the key's position.
func (p *parser) build(key token, op Operator, vals []string) (Requirement, error) {
	r, err := NewRequirement(key.lit, op, vals)
	if err != nil {
		return Requirement{}, p.errorf("requirement at position %d: %s", key.pos, strings.TrimSpace(err.Error()))
	}
	return r, nil
}
