package nodes

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/spectraclip/spectraclip/internal/anynum"
)

// ParamReader reads a node's parameters with type checks, remembering which keys were
// used so that Done can reject unknown ones. Errors name the node and the key.
type ParamReader struct {
	node   string
	params map[string]any
	used   map[string]bool
	err    error
	out    map[string]any
}

// NewParamReader starts reading params for the named node.
func NewParamReader(node string, params map[string]any) *ParamReader {
	if params == nil {
		params = map[string]any{}
	}
	return &ParamReader{node: node, params: params, used: map[string]bool{}, out: map[string]any{}}
}

func (p *ParamReader) fail(key, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("node %q: parameter %q: %s", p.node, key, fmt.Sprintf(format, args...))
	}
}

func (p *ParamReader) get(key string) (any, bool) {
	p.used[key] = true
	v, ok := p.params[key]
	return v, ok && v != nil
}

// Float reads a number.
func (p *ParamReader) Float(key string, def float64) float64 {
	v, ok := p.get(key)
	if !ok {
		p.out[key] = def
		return def
	}
	f, good := toFloat(v)
	if !good {
		p.fail(key, "want a number, got %T (%v)", v, v)
		return def
	}
	p.out[key] = f
	return f
}

// Int reads an integer.
func (p *ParamReader) Int(key string, def int) int {
	v, ok := p.get(key)
	if !ok {
		p.out[key] = def
		return def
	}
	f, good := toFloat(v)
	if !good || f != math.Trunc(f) {
		p.fail(key, "want an integer, got %T (%v)", v, v)
		return def
	}
	p.out[key] = int(f)
	return int(f)
}

// Bool reads a boolean.
func (p *ParamReader) Bool(key string, def bool) bool {
	v, ok := p.get(key)
	if !ok {
		p.out[key] = def
		return def
	}
	b, good := v.(bool)
	if !good {
		p.fail(key, "want true or false, got %T (%v)", v, v)
		return def
	}
	p.out[key] = b
	return b
}

// String reads a string; when allowed is not empty the value must be one of them.
func (p *ParamReader) String(key, def string, allowed ...string) string {
	v, ok := p.get(key)
	s := def
	if ok {
		str, good := v.(string)
		if !good {
			p.fail(key, "want a string, got %T (%v)", v, v)
			return def
		}
		s = str
	}
	if len(allowed) > 0 {
		found := false
		for _, a := range allowed {
			if a == s {
				found = true
			}
		}
		if !found {
			p.fail(key, "%q is not allowed (allowed: %s)", s, strings.Join(allowed, ", "))
			return def
		}
	}
	p.out[key] = s
	return s
}

// Ints reads a list of integers.
func (p *ParamReader) Ints(key string, def []int) []int {
	return readList(p, key, def, "integer", func(f float64) (int, bool) { return int(f), f == math.Trunc(f) })
}

// Floats reads a list of numbers.
func (p *ParamReader) Floats(key string, def []float64) []float64 {
	return readList(p, key, def, "number", func(f float64) (float64, bool) { return f, true })
}

// readList reads a list parameter whose elements conv accepts (a = "integer", "number").
func readList[T any](p *ParamReader, key string, def []T, a string, conv func(float64) (T, bool)) []T {
	v, ok := p.get(key)
	if !ok {
		if def != nil {
			p.out[key] = def
		}
		return def
	}
	list, good := toList(v)
	if !good {
		p.fail(key, "want a list of %ss, got %T (%v)", a, v, v)
		return def
	}
	out := make([]T, len(list))
	for i, e := range list {
		f, good := toFloat(e)
		var x T
		if good {
			x, good = conv(f)
		}
		if !good {
			article := "a"
			if strings.ContainsRune("aeiou", rune(a[0])) {
				article = "an"
			}
			p.fail(key, "element %d: want %s %s, got %T (%v)", i, article, a, e, e)
			return def
		}
		out[i] = x
	}
	p.out[key] = out
	return out
}

// Check records a validation failure for key unless ok.
func (p *ParamReader) Check(ok bool, key, format string, args ...any) {
	if !ok {
		p.fail(key, format, args...)
	}
}

// Resolved returns the parameters with defaults filled in (for serialisation).
func (p *ParamReader) Resolved() map[string]any { return p.out }

// Done returns the first error, or an error listing unknown keys.
func (p *ParamReader) Done() error {
	if p.err != nil {
		return p.err
	}
	var unknown []string
	for k := range p.params {
		if !p.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		var known []string
		for k := range p.used {
			known = append(known, k)
		}
		sort.Strings(known)
		return fmt.Errorf("node %q: unknown parameter(s) %s (allowed: %s)", p.node, strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	return nil
}

// toFloat is anynum.Float, plus the float32 and int32 that Go-built params (node defaults,
// plugin manifests) may hold.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float32:
		return float64(x), true
	case int32:
		return float64(x), true
	}
	return anynum.Float(v)
}

func toList(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case []int:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, true
	case []float64:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, true
	case []int64:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, true
	}
	return nil, false
}
