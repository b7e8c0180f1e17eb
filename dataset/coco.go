package dataset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"

	"github.com/sirupsen/logrus"
)

// COCO is a parsed COCO annotation file reduced to what segmentation masks need.
type COCO struct {
	Source      string
	Images      []COCOImage
	Annotations []COCOAnnotation
	Categories  []COCOCategory
}

// COCOImage is one image entry; its ID is matched to a frame index.
type COCOImage struct {
	ID       int64  `json:"id"`
	Width    int    `json:"width"`
	Height   int    `json:"height"`
	FileName string `json:"file_name"`
}

// COCOCategory is one category (class id and name).
type COCOCategory struct {
	ID            int64  `json:"id"`
	Name          string `json:"name"`
	Supercategory string `json:"supercategory,omitempty"`
}

// COCOAnnotation is one annotation with its decoded segmentation.
type COCOAnnotation struct {
	ID         int64
	ImageID    int64
	CategoryID int64
	// Polygons are flat [x0,y0,x1,y1,...] lists in pixel coordinates (x = column, y = row,
	// (0,0) the top-left corner of the top-left pixel).
	Polygons [][]float64
	// RLEs are run-length masks (from `segmentation` or from a separate `mask` key).
	RLEs []RLE
}

// RLE is a COCO run-length mask: Counts alternate runs of 0 and 1, starting with 0, over the
// pixels in column-major order of an H×W image.
type RLE struct {
	H, W   int
	Counts []uint32
}

type cocoJSON struct {
	Images      []COCOImage      `json:"images"`
	Annotations []cocoAnnJSON    `json:"annotations"`
	Categories  []COCOCategory   `json:"categories"`
	Info        *json.RawMessage `json:"info,omitempty"`
}

type cocoAnnJSON struct {
	ID           int64           `json:"id"`
	ImageID      *int64          `json:"image_id"`
	CategoryID   *int64          `json:"category_id"`
	Segmentation json.RawMessage `json:"segmentation"`
	Mask         json.RawMessage `json:"mask"`
}

type rleJSON struct {
	Size   []int           `json:"size"`
	Counts json.RawMessage `json:"counts"`
}

// maxCOCOBytes bounds an annotation file (decoded JSON takes several times its size).
const maxCOCOBytes = 1 << 30

// ReadCOCO reads and validates a COCO annotation file.
func ReadCOCO(path string) (*COCO, error) {
	b, err := ReadRegularFile(path, "coco", maxCOCOBytes)
	if err != nil {
		return nil, err
	}
	return ParseCOCO(b, path)
}

// ParseCOCO parses COCO JSON; name is used in error messages. Every annotation must refer to a
// listed image and category, and every segmentation must decode.
func ParseCOCO(b []byte, name string) (*COCO, error) {
	var raw cocoJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("coco %s: %w", name, jsonErr(err, b))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("coco %s: unexpected data after the JSON object", name)
	}
	c := &COCO{Source: name, Images: raw.Images, Categories: raw.Categories}
	images := map[int64]bool{}
	for _, im := range raw.Images {
		if images[im.ID] {
			return nil, fmt.Errorf("coco %s: image id %d is listed twice", name, im.ID)
		}
		if im.Width < 0 || im.Height < 0 {
			return nil, fmt.Errorf("coco %s: image %d has negative size %d×%d", name, im.ID, im.Width, im.Height)
		}
		images[im.ID] = true
	}
	cats := map[int64]bool{}
	for _, ct := range raw.Categories {
		if cats[ct.ID] {
			return nil, fmt.Errorf("coco %s: category id %d is listed twice", name, ct.ID)
		}
		if ct.ID < 0 || ct.ID > math.MaxInt32 {
			return nil, fmt.Errorf("coco %s: category id %d is outside 0..%d", name, ct.ID, math.MaxInt32)
		}
		cats[ct.ID] = true
	}
	for i, a := range raw.Annotations {
		if a.ImageID == nil {
			return nil, fmt.Errorf("coco %s: annotation %d (index %d) has no image_id", name, a.ID, i)
		}
		if a.CategoryID == nil {
			return nil, fmt.Errorf("coco %s: annotation %d (index %d) has no category_id", name, a.ID, i)
		}
		if !images[*a.ImageID] {
			return nil, fmt.Errorf("coco %s: annotation %d refers to image id %d, which is not in \"images\"", name, a.ID, *a.ImageID)
		}
		if !cats[*a.CategoryID] {
			return nil, fmt.Errorf("coco %s: annotation %d has category_id %d, which is not in \"categories\"", name, a.ID, *a.CategoryID)
		}
		ann := COCOAnnotation{ID: a.ID, ImageID: *a.ImageID, CategoryID: *a.CategoryID}
		for _, seg := range []json.RawMessage{a.Segmentation, a.Mask} {
			if err := decodeSegmentation(seg, &ann); err != nil {
				return nil, fmt.Errorf("coco %s: annotation %d: %w", name, a.ID, err)
			}
		}
		c.Annotations = append(c.Annotations, ann)
	}
	warnDegeneratePolygons(c)
	return c, nil
}

// maxPolygonWarnings bounds the warnings one file prints; the rest are counted.
const maxPolygonWarnings = 10

// warnDegeneratePolygons warns about polygons that can mark no pixel: fewer than 3 distinct
// points, or zero area (all points on one line). The reference skips them silently; they are
// usually an annotation-tool slip, so the user hears about each (up to maxPolygonWarnings).
func warnDegeneratePolygons(c *COCO) {
	n := 0
	for _, a := range c.Annotations {
		for k, p := range a.Polygons {
			why := degeneratePolygon(p)
			if why == "" {
				continue
			}
			if n < maxPolygonWarnings {
				logrus.Warnf("coco %s: annotation %d (image %d): polygon %d %s; it marks no pixel and is ignored", c.Source, a.ID, a.ImageID, k, why)
			}
			n++
		}
	}
	if n > maxPolygonWarnings {
		logrus.Warnf("coco %s: %d more degenerate polygons not listed", c.Source, n-maxPolygonWarnings)
	}
}

// degeneratePolygon says why the polygon xy is degenerate, or "" when it is not.
func degeneratePolygon(xy []float64) string {
	type pt struct{ x, y float64 }
	distinct := map[pt]bool{}
	for i := 0; i+1 < len(xy); i += 2 {
		distinct[pt{xy[i], xy[i+1]}] = true
	}
	if len(distinct) < 3 {
		return fmt.Sprintf("has %d distinct points (at least 3 are needed)", len(distinct))
	}
	// Shoelace area relative to the extent, so that collinear points with rounding are caught.
	n := len(xy) / 2
	var area, ext float64
	for i := 0; i < n; i++ {
		j := (i + 1) % n
		area += xy[2*i]*xy[2*j+1] - xy[2*j]*xy[2*i+1]
		ext = math.Max(ext, math.Max(math.Abs(xy[2*i]), math.Abs(xy[2*i+1])))
	}
	if math.Abs(area)/2 <= 1e-12*math.Max(1, ext*ext) {
		return "has zero area (its points lie on one line)"
	}
	return ""
}

// jsonErr adds the line number to a JSON syntax error.
func jsonErr(err error, b []byte) error {
	if se, ok := err.(*json.SyntaxError); ok {
		line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
		return fmt.Errorf("line %d: %w", line, err)
	}
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		line := 1 + bytes.Count(b[:min(int(te.Offset), len(b))], []byte("\n"))
		return fmt.Errorf("line %d: field %q: %w", line, te.Field, err)
	}
	return err
}

func decodeSegmentation(seg json.RawMessage, ann *COCOAnnotation) error {
	seg = bytes.TrimSpace(seg)
	if len(seg) == 0 || string(seg) == "null" {
		return nil
	}
	switch seg[0] {
	case '[':
		var polys [][]float64
		if err := json.Unmarshal(seg, &polys); err != nil {
			var flat []float64
			if err2 := json.Unmarshal(seg, &flat); err2 != nil {
				return fmt.Errorf("segmentation is neither a list of polygons nor an RLE object: %v", err)
			}
			polys = [][]float64{flat}
		}
		for i, p := range polys {
			if len(p)%2 != 0 {
				return fmt.Errorf("polygon %d has an odd number (%d) of coordinates", i, len(p))
			}
		}
		ann.Polygons = append(ann.Polygons, polys...)
	case '{':
		var r rleJSON
		if err := json.Unmarshal(seg, &r); err != nil {
			return fmt.Errorf("RLE: %v", err)
		}
		if len(r.Size) != 2 || r.Size[0] < 0 || r.Size[1] < 0 {
			return fmt.Errorf("RLE size %v must be [height, width]", r.Size)
		}
		if _, ok := checkedMul(math.MaxUint32, int64(r.Size[0]), int64(r.Size[1])); !ok {
			return fmt.Errorf("RLE size %v is too large", r.Size)
		}
		rle := RLE{H: r.Size[0], W: r.Size[1]}
		cnt := bytes.TrimSpace(r.Counts)
		switch {
		case len(cnt) > 0 && cnt[0] == '"':
			var s string
			if err := json.Unmarshal(cnt, &s); err != nil {
				return fmt.Errorf("RLE counts: %v", err)
			}
			c, err := DecodeRLEString(s)
			if err != nil {
				return err
			}
			rle.Counts = c
		case len(cnt) > 0 && cnt[0] == '[':
			var c []int64
			if err := json.Unmarshal(cnt, &c); err != nil {
				return fmt.Errorf("RLE counts: %v", err)
			}
			rle.Counts = make([]uint32, len(c))
			for i, v := range c {
				if v < 0 || v > math.MaxUint32 {
					return fmt.Errorf("RLE count %d is %d; counts must be non-negative", i, v)
				}
				rle.Counts[i] = uint32(v)
			}
		default:
			return fmt.Errorf("RLE has no \"counts\" list or string")
		}
		var sum uint64
		for _, v := range rle.Counts {
			sum += uint64(v)
		}
		if sum != uint64(rle.H)*uint64(rle.W) {
			return fmt.Errorf("RLE counts add up to %d pixels but size %d×%d has %d", sum, rle.H, rle.W, rle.H*rle.W)
		}
		ann.RLEs = append(ann.RLEs, rle)
	default:
		return fmt.Errorf("segmentation must be a list of polygons or an RLE object")
	}
	return nil
}

// Image returns the image entry with the given id.
func (c *COCO) Image(id int64) (COCOImage, bool) {
	for _, im := range c.Images {
		if im.ID == id {
			return im, true
		}
	}
	return COCOImage{}, false
}

// ImageIDs returns the sorted ids of all images.
func (c *COCO) ImageIDs() []int64 {
	ids := make([]int64, len(c.Images))
	for i, im := range c.Images {
		ids[i] = im.ID
	}
	slices.Sort(ids)
	return ids
}

// Rasterize builds the class-id map [h,w] of image imageID: zeros, then every annotation of
// that image in file order writes its category id over its pixels (later ones win). Polygons
// with fewer than 3 points are skipped, as the reference does. The COCO image size (when
// given) and every RLE size must equal h×w.
func (c *COCO) Rasterize(imageID int64, h, w int) ([]int32, error) {
	im, ok := c.Image(imageID)
	if !ok {
		return nil, fmt.Errorf("coco %s: no image with id %d", c.Source, imageID)
	}
	if (im.Width != 0 || im.Height != 0) && (im.Width != w || im.Height != h) {
		return nil, fmt.Errorf("coco %s: image %d is %d×%d (height×width) but the cube is %d×%d", c.Source, imageID, im.Height, im.Width, h, w)
	}
	if h < 0 || w < 0 {
		return nil, fmt.Errorf("coco %s: negative canvas %d×%d", c.Source, h, w)
	}
	out := make([]int32, h*w)
	scratch := make([]bool, h*w)
	var touched []int
	for _, a := range c.Annotations {
		if a.ImageID != imageID {
			continue
		}
		touched = touched[:0]
		mark := func(i int) {
			if !scratch[i] {
				scratch[i] = true
				touched = append(touched, i)
			}
		}
		for _, p := range a.Polygons {
			if len(p) < 6 {
				continue
			}
			if err := scanPolygon(p, h, w, func(r, c0, c1 int) {
				for c := c0; c < c1; c++ {
					mark(r*w + c)
				}
			}); err != nil {
				return nil, fmt.Errorf("coco %s: annotation %d: %w", c.Source, a.ID, err)
			}
		}
		for _, r := range a.RLEs {
			if r.H != h || r.W != w {
				return nil, fmt.Errorf("coco %s: annotation %d: RLE size %d×%d differs from image %d×%d", c.Source, a.ID, r.H, r.W, h, w)
			}
			pos := 0
			for k, n := range r.Counts {
				if pos+int(n) > h*w {
					return nil, fmt.Errorf("coco %s: annotation %d: RLE counts run past %d pixels", c.Source, a.ID, h*w)
				}
				if k%2 == 1 {
					for p := pos; p < pos+int(n); p++ {
						mark((p%h)*w + p/h)
					}
				}
				pos += int(n)
			}
		}
		for _, i := range touched {
			out[i] = int32(a.CategoryID)
			scratch[i] = false
		}
	}
	return out, nil
}

// FillPolygon sets dst[r*w+c] = value for every pixel whose centre (c+0.5, r+0.5) lies inside
// the polygon xy = [x0,y0,x1,y1,...] by the even-odd rule. The generator and the COCO reader
// share it, so painted pixels and rasterised labels agree exactly.
func FillPolygon(dst []int32, h, w int, xy []float64, value int32) error {
	if len(dst) != h*w {
		return fmt.Errorf("fill polygon: canvas has %d values, want %d×%d", len(dst), h, w)
	}
	return scanPolygon(xy, h, w, func(r, c0, c1 int) {
		row := dst[r*w : (r+1)*w]
		for c := c0; c < c1; c++ {
			row[c] = value
		}
	})
}

// scanPolygon calls span(r, c0, c1) for each run of pixels [c0,c1) of row r whose centres are
// inside the polygon (even-odd rule; a centre exactly on a left edge is inside, on a right edge
// outside).
func scanPolygon(xy []float64, h, w int, span func(r, c0, c1 int)) error {
	if len(xy)%2 != 0 {
		return fmt.Errorf("polygon has an odd number (%d) of coordinates", len(xy))
	}
	n := len(xy) / 2
	if n < 3 {
		return nil
	}
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for i := 0; i < n; i++ {
		x, y := xy[2*i], xy[2*i+1]
		if math.IsNaN(x) || math.IsInf(x, 0) || math.IsNaN(y) || math.IsInf(y, 0) {
			return fmt.Errorf("polygon point %d (%v, %v) is not finite", i, x, y)
		}
		ymin, ymax = math.Min(ymin, y), math.Max(ymax, y)
	}
	// Clamp in float64 first: converting an out-of-range float to int is undefined.
	r0 := int(math.Max(0, math.Floor(ymin-0.5)))
	r1 := int(math.Min(float64(h-1), math.Ceil(ymax-0.5)))
	xs := make([]float64, 0, 8)
	for r := r0; r <= r1; r++ {
		yc := float64(r) + 0.5
		xs = xs[:0]
		for i := 0; i < n; i++ {
			j := (i + 1) % n
			x0, y0, x1, y1 := xy[2*i], xy[2*i+1], xy[2*j], xy[2*j+1]
			if (y0 > yc) != (y1 > yc) {
				xs = append(xs, x0+(yc-y0)*(x1-x0)/(y1-y0))
			}
		}
		sort.Float64s(xs)
		for k := 0; k+1 < len(xs); k += 2 {
			// Centres c+0.5 with xa <= c+0.5 < xb.
			c0 := math.Ceil(xs[k] - 0.5)
			c1 := math.Ceil(xs[k+1] - 0.5)
			c0 = math.Max(c0, 0)
			c1 = math.Min(c1, float64(w))
			if c1 > c0 {
				span(r, int(c0), int(c1))
			}
		}
	}
	return nil
}

// DecodeRLEString decodes the compressed counts string of pycocotools (rleFrString): 6-bit
// groups offset by 48, 5 data bits and a continuation bit, sign-extended, and from the fourth
// value on a delta to the value two places back.
func DecodeRLEString(s string) ([]uint32, error) {
	var out []uint32
	var prev [2]int64
	p := 0
	for p < len(s) {
		var x int64
		k := 0
		for more := true; more; {
			if p >= len(s) {
				return nil, fmt.Errorf("RLE string ends inside a value at byte %d", p)
			}
			c := int64(s[p]) - 48
			if c < 0 || c > 63 {
				return nil, fmt.Errorf("RLE string has invalid character %q at byte %d", s[p], p)
			}
			if k >= 12 {
				return nil, fmt.Errorf("RLE string value at byte %d is too long", p)
			}
			x |= (c & 0x1f) << (5 * k)
			more = c&0x20 != 0
			p++
			k++
			if !more && c&0x10 != 0 {
				x |= -1 << (5 * k)
			}
		}
		m := len(out)
		if m > 2 {
			x += prev[m%2]
		}
		if x < 0 || x > math.MaxUint32 {
			return nil, fmt.Errorf("RLE string decodes to count %d at value %d; counts must be in 0..2^32-1", x, m)
		}
		prev[m%2] = x
		out = append(out, uint32(x))
	}
	return out, nil
}

// EncodeRLEString is the inverse of DecodeRLEString (pycocotools rleToString).
func EncodeRLEString(counts []uint32) string {
	var b []byte
	for i, c := range counts {
		x := int64(c)
		if i > 2 {
			x -= int64(counts[i-2])
		}
		for more := true; more; {
			ch := x & 0x1f
			x >>= 5
			if ch&0x10 != 0 {
				more = x != -1
			} else {
				more = x != 0
			}
			if more {
				ch |= 0x20
			}
			b = append(b, byte(ch+48))
		}
	}
	return string(b)
}

// EncodeRLE run-length encodes a row-major h×w mask in COCO's column-major order.
func EncodeRLE(mask []bool, h, w int) RLE {
	var counts []uint32
	cur := false
	run := uint32(0)
	for c := 0; c < w; c++ {
		for r := 0; r < h; r++ {
			if mask[r*w+c] != cur {
				counts = append(counts, run)
				run = 0
				cur = !cur
			}
			run++
		}
	}
	counts = append(counts, run)
	return RLE{H: h, W: w, Counts: counts}
}
