package torch

/*
#include "spectraclip.h"
*/
import "C"

import "time"

// BenchAddLoopCxx runs n additions of a and b (into a preallocated output when useOut) in
// C++ alone and returns the elapsed time: the baseline that the binding's per-op overhead
// is measured against.
func BenchAddLoopCxx(a, b *Tensor, n int64, useOut bool) (time.Duration, error) {
	if !a.Valid() || !b.Valid() {
		return 0, &Error{Op: "bench_add_loop", Msg: "nil or freed tensor"}
	}
	var ns C.int64_t
	if err := takeErr("bench_add_loop", C.sc_bench_add_loop(a.h, b.h, C.int64_t(n), cbool(useOut), &ns)); err != nil {
		return 0, err
	}
	keepAlive(a, b)
	return time.Duration(ns), nil
}
