package scene

import (
	"fmt"
	"math/rand/v2"
	"sort"

	"github.com/spectraclip/spectraclip/scene/scenespec"
)

// SplitNames are the pixel splits, in order.
var SplitNames = [3]string{"train", "val", "test"}

// PixelSplit is a split of a scene's pixels.
type PixelSplit struct {
	Rule  string
	H, W  int
	Masks [3][]bool // train, val, test: H·W each, row-major
	// Components are the connected anomaly components (8-neighbour) with their split.
	Components []Component
	// ValIsTrain is set when the val share is 0: validation uses the train pixels.
	ValIsTrain bool
}

// Component is one connected anomaly object.
type Component struct {
	Pixels int `json:"pixels"`
	Split  int `json:"split"` // index into SplitNames
	First  int `json:"first"` // row-major index of its first pixel
}

// Map returns the masks by split name.
func (p *PixelSplit) Map() map[string][]bool {
	return map[string][]bool{"train": p.Masks[0], "val": p.Masks[1], "test": p.Masks[2]}
}

// Components returns the connected components (8-neighbour) of the anomaly pixels, as a
// component index per pixel (-1 for normal pixels) and the sizes.
func components(anom []bool, h, w int) ([]int, []int) {
	lab := make([]int, len(anom))
	for i := range lab {
		lab[i] = -1
	}
	var sizes []int
	stack := []int{}
	for i, a := range anom {
		if !a || lab[i] >= 0 {
			continue
		}
		id := len(sizes)
		sizes = append(sizes, 0)
		lab[i] = id
		stack = append(stack[:0], i)
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			sizes[id]++
			r, c := p/w, p%w
			for dr := -1; dr <= 1; dr++ {
				for dc := -1; dc <= 1; dc++ {
					rr, cc := r+dr, c+dc
					if rr < 0 || rr >= h || cc < 0 || cc >= w {
						continue
					}
					q := rr*w + cc
					if anom[q] && lab[q] < 0 {
						lab[q] = id
						stack = append(stack, q)
					}
				}
			}
		}
	}
	return lab, sizes
}

// Split divides the pixels of an h×w scene with anomaly labels anom by spec's rule and seed.
// The objects rule refuses a split that leaves train, val (when its share is positive) or
// test without an anomaly component.
func Split(anom []bool, h, w int, spec scenespec.Spec, seed uint64) (*PixelSplit, error) {
	if len(anom) != h*w {
		return nil, fmt.Errorf("scene split: %d labels for %d×%d pixels", len(anom), h, w)
	}
	lab, sizes := components(anom, h, w)
	if spec.Split == "auto" || spec.Split == "" {
		spec.Split = "objects" // a scene that is split by pixels at all is one that runs whole
	}
	ps := &PixelSplit{Rule: spec.Split, H: h, W: w}
	for i := range ps.Masks {
		ps.Masks[i] = make([]bool, h*w)
	}
	first := make([]int, len(sizes))
	for i := len(lab) - 1; i >= 0; i-- {
		if lab[i] >= 0 {
			first[lab[i]] = i
		}
	}
	if spec.Split == "none" {
		for i := range ps.Masks {
			for p := range ps.Masks[i] {
				ps.Masks[i][p] = true
			}
		}
		for c, n := range sizes {
			ps.Components = append(ps.Components, Component{Pixels: n, Split: -1, First: first[c]})
		}
		return ps, nil
	}
	f := spec.Fractions
	if f == [3]float64{} {
		f = scenespec.DefaultFractions
	}
	var active []int
	for i, x := range f {
		if x > 0 {
			active = append(active, i)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5ce4e5ce4e))
	// components by size (largest first), shuffled within strata of len(active): each stratum
	// is dealt to the splits by deficit, so that every split gets objects of every size
	order := make([]int, len(sizes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return sizes[order[a]] > sizes[order[b]] })
	compSplit := make([]int, len(sizes))
	var count [3]int
	assigned := 0
	for s0 := 0; s0 < len(order); s0 += len(active) {
		st := order[s0:min(s0+len(active), len(order))]
		rng.Shuffle(len(st), func(i, j int) { st[i], st[j] = st[j], st[i] })
		for _, c := range st {
			assigned++
			best, bestD := -1, 0.0
			for _, k := range rng.Perm(len(active)) {
				s := active[k]
				d := f[s]*float64(assigned) - float64(count[s])
				if best < 0 || d > bestD {
					best, bestD = s, d
				}
			}
			compSplit[c] = best
			count[best]++
		}
	}
	var empty []string
	for _, s := range active {
		if count[s] == 0 {
			empty = append(empty, SplitNames[s])
		}
	}
	if len(empty) > 0 {
		return nil, fmt.Errorf("scene %s: the objects split needs at least one anomaly component (connected object) in each of %d splits, but the scene has %d, which leaves %v without one; use fewer splits (data.scene.fractions with a val share of 0, e.g. [0.5, 0, 0.5]: validation on the train pixels), or --split none (data.scene.split: none) for zero-shot evaluation only",
			spec.Path, len(active), len(sizes), empty)
	}
	for c, n := range sizes {
		ps.Components = append(ps.Components, Component{Pixels: n, Split: compSplit[c], First: first[c]})
	}
	// normal pixels: square blocks, shuffled, each to the split furthest below its share
	b := spec.Block
	if b < 1 {
		b = scenespec.DefaultBlock
	}
	type block struct{ r0, c0, n int }
	var blocks []block
	for r0 := 0; r0 < h; r0 += b {
		for c0 := 0; c0 < w; c0 += b {
			n := 0
			for r := r0; r < min(r0+b, h); r++ {
				for c := c0; c < min(c0+b, w); c++ {
					if lab[r*w+c] < 0 {
						n++
					}
				}
			}
			if n > 0 {
				blocks = append(blocks, block{r0, c0, n})
			}
		}
	}
	rng.Shuffle(len(blocks), func(i, j int) { blocks[i], blocks[j] = blocks[j], blocks[i] })
	var px [3]int
	total := 0
	for _, bl := range blocks {
		total += bl.n
		best, bestD := -1, 0.0
		for _, s := range active {
			d := f[s]*float64(total) - float64(px[s])
			if best < 0 || d > bestD {
				best, bestD = s, d
			}
		}
		px[best] += bl.n
		for r := bl.r0; r < min(bl.r0+b, h); r++ {
			for c := bl.c0; c < min(bl.c0+b, w); c++ {
				if lab[r*w+c] < 0 {
					ps.Masks[best][r*w+c] = true
				}
			}
		}
	}
	for p, c := range lab {
		if c >= 0 {
			ps.Masks[compSplit[c]][p] = true
		}
	}
	if f[1] == 0 {
		ps.ValIsTrain = true
		copy(ps.Masks[1], ps.Masks[0])
	}
	return ps, nil
}
