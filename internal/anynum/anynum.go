// Package anynum reads a number out of an untyped config value (a map[string]any from a YAML
// or JSON decoder, a viper setting, a command-line override). It imports nothing of this
// module, so config, nodes and scene, which all parse such maps, can share it.
package anynum

// Float returns v as a float64 when v is one of the number types the decoders produce: int
// and int64 (YAML, viper), uint64 (YAML integers above MaxInt64) and float64 (YAML, JSON).
// Anything else, nil, bools, strings and the other Go number types included, gives false.
func Float(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}
