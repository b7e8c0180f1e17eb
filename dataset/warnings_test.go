package dataset

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// captureWarnings collects what the standard logrus logger prints while fn runs.
func captureWarnings(t *testing.T, fn func()) string {
	t.Helper()
	var buf bytes.Buffer
	l := logrus.StandardLogger()
	out, lvl := l.Out, l.GetLevel()
	l.SetOutput(&buf)
	l.SetLevel(logrus.InfoLevel)
	defer func() { l.SetOutput(out); l.SetLevel(lvl) }()
	fn()
	return buf.String()
}

// TestDegenerateCOCOPolygonsWarn: polygons with fewer than 3 distinct points or zero area
// (collinear points) mark no pixel; reading them warns with the file, annotation and polygon,
// while a proper polygon of random shape does not warn.
func TestDegenerateCOCOPolygonsWarn(t *testing.T) {
	x0, y0 := 2+4*rand.Float64(), 2+4*rand.Float64()
	good := fmt.Sprintf("[%g, %g, %g, %g, %g, %g]", x0, y0, x0+5, y0, x0, y0+5)
	repeated := fmt.Sprintf("[%g, %g, %g, %g, %g, %g, %g, %g]", x0, y0, x0+3, y0, x0, y0, x0+3, y0)
	collinear := fmt.Sprintf("[%g, %g, %g, %g, %g, %g]", x0, y0, x0+2, y0+2, x0+4, y0+4)
	doc := `{"images": [{"id": 1, "width": 16, "height": 16}], "categories": [{"id": 3, "name": "stone"}],
	 "annotations": [
	  {"id": 10, "image_id": 1, "category_id": 3, "segmentation": [` + good + `]},
	  {"id": 11, "image_id": 1, "category_id": 3, "segmentation": [` + repeated + `]},
	  {"id": 12, "image_id": 1, "category_id": 3, "segmentation": [` + good + `, ` + collinear + `]},
	  {"id": 13, "image_id": 1, "category_id": 3, "segmentation": [[1, 1, 4, 4]]}]}`
	path := filepath.Join(t.TempDir(), "ann.json")
	os.WriteFile(path, []byte(doc), 0o644)
	var c *COCO
	var err error
	log := captureWarnings(t, func() { c, err = ReadCOCO(path) })
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"annotation 11 (image 1): polygon 0 has 2 distinct points",
		"annotation 12 (image 1): polygon 1 has zero area",
		"annotation 13 (image 1): polygon 0 has 2 distinct points",
	} {
		if !strings.Contains(log, want) || !strings.Contains(log, path) {
			t.Errorf("warnings %q lack %q (and the file name)", log, want)
		}
	}
	if strings.Contains(log, "annotation 10 ") || strings.Contains(log, "polygon 0 has zero area") {
		t.Errorf("a proper polygon was reported: %q", log)
	}
	// The degenerate polygons indeed mark nothing: the map equals the good polygon's alone.
	lab, err := c.Rasterize(1, 16, 16)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int32, 256)
	xy := []float64{x0, y0, x0 + 5, y0, x0, y0 + 5}
	FillPolygon(want, 16, 16, xy, 3)
	for i := range want {
		if lab[i] != want[i] {
			t.Fatalf("pixel %d: %d, want %d", i, lab[i], want[i])
		}
	}
}

// TestOverlappingSplitsWarn: a frame in both train and test (or train and val), or twice in a
// split, is reported when the dataset is opened; identical val and test lists (the reference's
// own configuration) are not.
func TestOverlappingSplitsWarn(t *testing.T) {
	h := newHandDataset(t, 5, 4, 4, 3)
	root := h.write(t)
	var err error
	log := captureWarnings(t, func() {
		_, err = OpenWith(root, Options{Splits: &Splits{Train: []int{0, 1, 2}, Val: []int{3, 4}, Test: []int{3, 4}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if log != "" {
		t.Fatalf("disjoint train split warned: %q", log)
	}
	log = captureWarnings(t, func() {
		_, err = OpenWith(root, Options{Splits: &Splits{Train: []int{0, 1, 2, 2}, Val: []int{1}, Test: []int{2, 3}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{root, "frame 2 is in both train and test", "frame 1 is in both train and val", "train lists frame 2 twice"} {
		if !strings.Contains(log, want) {
			t.Errorf("warnings %q lack %q", log, want)
		}
	}
}

// TestErrorsAreOneLine: YAML decode errors of dataset.yaml (several lines from the yaml
// package) and a .mat scene without numeric variables give one line that names the file and
// what it holds.
func TestErrorsAreOneLine(t *testing.T) {
	h := newHandDataset(t, 2, 4, 4, 3)
	root := h.write(t)
	p := filepath.Join(root, ManifestName)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, append(b, "colour: blue\nsize: 3\n"...), 0o644)
	_, err := Open(root)
	mustContain(t, err, p, "colour", "size")
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error spans lines: %q", err)
	}
	// A MAT file holding only a char array.
	mat := filepath.Join(t.TempDir(), "note.mat")
	var el bytes.Buffer
	el.Write(matHeader())
	body := concatBytes(tagged(miUINT32, []byte{4, 0, 0, 0, 0, 0, 0, 0}), tagged(miINT32, []byte{1, 0, 0, 0, 2, 0, 0, 0}), tagged(miINT8, []byte("note")), tagged(miUINT16, []byte("h\x00i\x00")))
	el.Write(tagged(miMATRIX, body))
	os.WriteFile(mat, el.Bytes(), 0o644)
	_, _, err = LoadScene(mat, SceneOptions{})
	mustContain(t, err, mat, "no numeric variables", "note (char")
}

func tagged(typ uint32, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload)+8)
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(payload)))
	b = append(b, payload...)
	return append(b, make([]byte, (8-len(payload)%8)%8)...)
}

func concatBytes(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
