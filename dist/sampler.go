package dist

// Shard returns rank's part of an epoch's frame order: every world-th frame from rank on
// (torch's DistributedSampler). With pad, the order is first extended by repeating its
// first frames up to a multiple of world, so every rank gets the same number of frames and
// takes the same number of steps (torch's default, drop_last=False); without pad the shards
// differ by at most one frame and together hold each frame exactly once (evaluation). The
// ranks' k-th batches of b frames together are the k-th batch of world·b frames of the
// one-process order, so averaged gradients equal those of one process with world·b.
func Shard(order []int, rank, world int, pad bool) []int {
	if world <= 1 {
		return append([]int(nil), order...)
	}
	src := order
	if pad && len(order) > 0 && len(order)%world != 0 {
		n := (len(order) + world - 1) / world * world
		src = make([]int, 0, n)
		for len(src) < n {
			src = append(src, order[:min(len(order), n-len(src))]...)
		}
	}
	out := make([]int, 0, len(src)/world+1)
	for i := rank; i < len(src); i += world {
		out = append(out, src[i])
	}
	return out
}
