package dataset

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// insideEvenOdd is the per-point crossing test (W. R. Franklin's PNPOLY): an independent
// formulation of the even-odd rule that the scanline filler must agree with.
func insideEvenOdd(xy []float64, px, py float64) bool {
	n := len(xy) / 2
	in := false
	for i, j := 0, n-1; i < n; j, i = i, i+1 {
		xi, yi, xj, yj := xy[2*i], xy[2*i+1], xy[2*j], xy[2*j+1]
		if (yi > py) != (yj > py) && px < (xj-xi)*(py-yi)/(yj-yi)+xi {
			in = !in
		}
	}
	return in
}

func TestFillPolygonMatchesPointTest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const H, W = 23, 31
	for trial := 0; trial < 300; trial++ {
		n := 3 + rng.IntN(9)
		xy := make([]float64, 2*n)
		for i := range xy {
			// Some points outside the canvas, some on exact pixel centres and edges.
			v := rng.Float64()*40 - 5
			if rng.IntN(4) == 0 {
				v = math.Round(v*2) / 2
			}
			xy[i] = v
		}
		got := make([]int32, H*W)
		if err := FillPolygon(got, H, W, xy, 7); err != nil {
			t.Fatal(err)
		}
		for r := 0; r < H; r++ {
			for c := 0; c < W; c++ {
				want := insideEvenOdd(xy, float64(c)+0.5, float64(r)+0.5)
				if (got[r*W+c] == 7) != want {
					t.Fatalf("trial %d polygon %v: pixel (%d,%d) filled=%v, point test says %v", trial, xy, r, c, got[r*W+c] == 7, want)
				}
			}
		}
	}
}

func TestFillPolygonClosedForms(t *testing.T) {
	const H, W = 40, 50
	count := func(xy []float64) int {
		m := make([]int32, H*W)
		if err := FillPolygon(m, H, W, xy, 1); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, v := range m {
			n += int(v)
		}
		return n
	}
	// Rectangle on pixel edges: exactly its area.
	if n := count([]float64{3, 4, 13, 4, 13, 9, 3, 9}); n != 50 {
		t.Fatalf("10×5 rectangle filled %d pixels, want 50", n)
	}
	// Rectangle on pixel centres covers the centres in [x0, x1) × [y0, y1).
	if n := count([]float64{2.5, 1.5, 6.5, 1.5, 6.5, 3.5, 2.5, 3.5}); n != 8 {
		t.Fatalf("centre-aligned rectangle filled %d pixels, want 8", n)
	}
	// A 200-gon circle of radius 12: area πr² within the perimeter's worth of pixels.
	var circ []float64
	for i := 0; i < 200; i++ {
		a := 2 * math.Pi * float64(i) / 200
		circ = append(circ, 25.3+12*math.Cos(a), 20.1+12*math.Sin(a))
	}
	if n := count(circ); math.Abs(float64(n)-math.Pi*144) > 2*math.Pi*12*0.5 {
		t.Fatalf("circle filled %d pixels, want about %.0f", n, math.Pi*144)
	}
	if n := count([]float64{-100, -100, 1e300, -100, 1e300, 1e300}); n == 0 {
		t.Fatal("huge triangle covering the canvas filled nothing")
	}
}

func TestRLEString(t *testing.T) {
	// Hand-derived from pycocotools' rleToString: 3 -> '3', 32 -> 'P1'.
	for _, tc := range []struct {
		counts []uint32
		s      string
	}{{[]uint32{3}, "3"}, {[]uint32{32}, "P1"}, {[]uint32{0}, "0"}} {
		if got := EncodeRLEString(tc.counts); got != tc.s {
			t.Fatalf("encode %v = %q, want %q", tc.counts, got, tc.s)
		}
		got, err := DecodeRLEString(tc.s)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.counts) {
			t.Fatalf("decode %q = %v %v, want %v", tc.s, got, err, tc.counts)
		}
	}
	// A string pycocotools produced for a 50×70 mask (published in a COCO tools README): the
	// decoded runs must cover exactly 3500 pixels, which fails if the delta rule is off by one.
	const pyco = "0g05b08J4M2N2NA^O1`0OCO=0E090H080IO68DH;>@C>a0_O_O`0j0OWOF<:CM72I24NL43JM92FN;1ENKO72L0LO91J0MO92INO0NO122OO0M031O000NO31OO11MO40N011MO41MO21L06OL021L06OL021L06OL021L060J040L060J040L060J040L060J040L060J040L060J040L060KO31L060KO31L06OL021L06OL021L06OL021MO41MO21MO40N100NO310O00M0310O00NO1220NO92IONO91KOMO72M0<1EO:2GN63KM34OLM73JF<;=1G_O_Ob0=AC`07EH=1IO71H090F0:1DO>1_O1b0>2N2N3L6H]O"
	counts, err := DecodeRLEString(pyco)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, c := range counts {
		sum += int(c)
	}
	if sum != 50*70 {
		t.Fatalf("pycocotools string decodes to %d pixels, want 3500", sum)
	}
	if EncodeRLEString(counts) != pyco {
		t.Fatal("re-encoding the pycocotools string does not reproduce it")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 500; trial++ {
		c := make([]uint32, 1+rng.IntN(30))
		for i := range c {
			c[i] = uint32(rng.IntN(1 << uint(1+rng.IntN(20))))
		}
		got, err := DecodeRLEString(EncodeRLEString(c))
		if err != nil || fmt.Sprint(got) != fmt.Sprint(c) {
			t.Fatalf("round trip of %v gave %v %v", c, got, err)
		}
	}
	for _, bad := range []string{"\x20", "P", "~~~~~~~~~~~~~~0", "000@"} {
		if _, err := DecodeRLEString(bad); err == nil {
			t.Fatalf("DecodeRLEString(%q) accepted bad input", bad)
		}
	}
}

func TestEncodeRLEColumnMajor(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const H, W = 7, 5
	mask := make([]bool, H*W)
	for i := range mask {
		mask[i] = rng.IntN(3) == 0
	}
	rle := EncodeRLE(mask, H, W)
	// Expand the runs by hand in column-major order.
	var flat []bool
	for k, n := range rle.Counts {
		for i := uint32(0); i < n; i++ {
			flat = append(flat, k%2 == 1)
		}
	}
	for c := 0; c < W; c++ {
		for r := 0; r < H; r++ {
			if flat[c*H+r] != mask[r*W+c] {
				t.Fatalf("pixel (%d,%d) differs", r, c)
			}
		}
	}
}

func TestCOCORasterize(t *testing.T) {
	const H, W = 6, 8
	// Image 3: a background rectangle (cat 4), a polygon (cat 1) over it, then an RLE (cat 3)
	// over both; a polygon of 2 points is ignored; image 5 has an uncompressed RLE.
	mask := make([]bool, H*W)
	mask[2*W+2], mask[2*W+3], mask[3*W+2] = true, true, true
	rle := EncodeRLE(mask, H, W)
	doc := map[string]any{
		"images":     []map[string]any{{"id": 3, "width": W, "height": H}, {"id": 5, "width": W, "height": H}},
		"categories": []map[string]any{{"id": 1, "name": "Lentils_black"}, {"id": 3, "name": "Stone"}, {"id": 4, "name": "Background"}},
		"annotations": []map[string]any{
			{"id": 1, "image_id": 3, "category_id": 4, "segmentation": [][]float64{{0, 0, 8, 0, 8, 6, 0, 6}}},
			{"id": 2, "image_id": 3, "category_id": 1, "segmentation": [][]float64{{1, 1, 5, 1, 5, 4, 1, 4}, {0, 0, 1, 1}}},
			{"id": 3, "image_id": 3, "category_id": 3, "segmentation": map[string]any{"size": []int{H, W}, "counts": EncodeRLEString(rle.Counts)}},
			{"id": 4, "image_id": 5, "category_id": 3, "mask": map[string]any{"size": []int{H, W}, "counts": rle.Counts}},
		},
	}
	b, _ := json.Marshal(doc)
	c, err := ParseCOCO(b, "t.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Rasterize(3, H, W)
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r < H; r++ {
		for col := 0; col < W; col++ {
			want := int32(4)
			if r >= 1 && r < 4 && col >= 1 && col < 5 {
				want = 1
			}
			if mask[r*W+col] {
				want = 3
			}
			if got[r*W+col] != want {
				t.Fatalf("image 3 pixel (%d,%d) = %d, want %d", r, col, got[r*W+col], want)
			}
		}
	}
	got5, err := c.Rasterize(5, H, W)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got5 {
		if (got5[i] == 3) != mask[i] {
			t.Fatalf("image 5 pixel %d = %d", i, got5[i])
		}
	}
	_, err = c.Rasterize(3, H+1, W)
	mustContain(t, err, "t.json", "image 3 is 6×8", "cube is 7×8")
}

func TestCOCOErrors(t *testing.T) {
	base := `"images":[{"id":1,"width":4,"height":3}],"categories":[{"id":1,"name":"a"}]`
	tests := []struct{ name, json, want string }{
		{"syntax", `{"images": [}`, "line 1"},
		{"image missing", `{` + base + `,"annotations":[{"id":9,"image_id":2,"category_id":1,"segmentation":[]}]}`, "annotation 9 refers to image id 2"},
		{"category missing", `{` + base + `,"annotations":[{"id":9,"image_id":1,"category_id":5,"segmentation":[]}]}`, "category_id 5"},
		{"no image_id", `{` + base + `,"annotations":[{"id":9,"category_id":1}]}`, "annotation 9 (index 0) has no image_id"},
		{"odd polygon", `{` + base + `,"annotations":[{"id":9,"image_id":1,"category_id":1,"segmentation":[[1,2,3,4,5]]}]}`, "odd number"},
		{"rle sum", `{` + base + `,"annotations":[{"id":9,"image_id":1,"category_id":1,"segmentation":{"size":[3,4],"counts":[1,2]}}]}`, "add up to 3 pixels but size 3×4 has 12"},
		{"rle bad string", `{` + base + `,"annotations":[{"id":9,"image_id":1,"category_id":1,"segmentation":{"size":[3,4],"counts":" "}}]}`, "invalid character"},
		{"rle size", `{` + base + `,"annotations":[{"id":9,"image_id":1,"category_id":1,"segmentation":{"size":[3],"counts":[12]}}]}`, "[height, width]"},
		{"dup image", `{"images":[{"id":1},{"id":1}]}`, "image id 1 is listed twice"},
		{"segmentation type", `{` + base + `,"annotations":[{"id":9,"image_id":1,"category_id":1,"segmentation":"x"}]}`, "list of polygons or an RLE"},
		{"trailing", `{}{}`, "after the JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCOCO([]byte(tc.json), "bad.json")
			mustContain(t, err, "bad.json", tc.want)
		})
	}
}

func TestPNGMask(t *testing.T) {
	b, err := os.ReadFile("testdata/png/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp map[string]struct {
		Shape  []int     `json:"shape"`
		Values []float64 `json:"values"`
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	for name, want := range exp {
		m, err := ReadPNGMask("testdata/png/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if m.H != want.Shape[0] || m.W != want.Shape[1] {
			t.Fatalf("%s: %d×%d, want %v", name, m.H, m.W, want.Shape)
		}
		for i, v := range m.IDs {
			if float64(v) != want.Values[i] {
				t.Fatalf("%s: pixel %d = %d, want %v", name, i, v, want.Values[i])
			}
		}
	}
	_, err = ReadPNGMask("testdata/mat/expected.json")
	mustContain(t, err, "expected.json")
}
