package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type expectedVar struct {
	Shape  []int     `json:"shape"`
	Class  string    `json:"class"`
	DType  string    `json:"dtype"`
	Values []float64 `json:"values"`
}

// TestMATFixtures reads files written by scipy.io.savemat (plain and compressed) and the
// hand-written layouts of testdata/gen_fixtures.py, and compares with the values that script
// recorded.
func TestMATFixtures(t *testing.T) {
	b, err := os.ReadFile("testdata/mat/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var exp map[string]map[string]expectedVar
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	for file, vars := range exp {
		t.Run(file, func(t *testing.T) {
			m, err := ReadMAT(filepath.Join("testdata/mat", file))
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range vars {
				a, err := m.Var(name)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(a.Shape) != fmt.Sprint(want.Shape) {
					t.Fatalf("%s: shape %v, want %v", name, a.Shape, want.Shape)
				}
				if a.Class != want.Class || a.DType != want.DType {
					t.Fatalf("%s: class/dtype %s/%s, want %s/%s", name, a.Class, a.DType, want.Class, want.DType)
				}
				equalExact(t, file+":"+name, a.Data, want.Values)
				if a.Complex != (file == "complex.mat") {
					t.Fatalf("%s: complex = %v", name, a.Complex)
				}
			}
			if strings.HasPrefix(file, "scipy") {
				for _, skipped := range []string{"label", "cellv", "st"} {
					_, err := m.Var(skipped)
					mustContain(t, err, skipped, "only numeric arrays are supported")
				}
			}
		})
	}
}

func TestMATv73(t *testing.T) {
	_, err := ReadMAT("testdata/mat/v73.mat")
	if !errors.Is(err, ErrMATv73) {
		t.Fatalf("got %v, want ErrMATv73", err)
	}
	mustContain(t, err, "v73.mat", "h5py", "-v7")
}

func TestFindSceneVars(t *testing.T) {
	mk := func(names ...string) []*Array {
		var out []*Array
		for _, n := range names {
			out = append(out, &Array{Name: n, Shape: []int{1}})
		}
		return out
	}
	tests := []struct {
		vars             []*Array
		cube, gt         string
		wantCube, wantGT string
		wantErr          string
	}{
		{vars: mk("data", "map"), wantCube: "data", wantGT: "map"},
		{vars: mk("hsi_gt", "hsi"), wantCube: "hsi", wantGT: "hsi_gt"},
		{vars: mk("groundtruth", "data"), wantCube: "data", wantGT: "groundtruth"},
		{vars: mk("X", "Y"), cube: "Y", gt: "X", wantCube: "Y", wantGT: "X"},
		{vars: mk("X", "Y"), cube: "Y", wantCube: "Y"},
		{vars: mk("X", "Y"), wantErr: "found none of the cube/ground-truth pairs"},
		{vars: mk("X"), cube: "Z", wantErr: "no cube variable \"Z\""},
		{vars: mk("X"), cube: "X", gt: "Q", wantErr: "no ground-truth variable \"Q\""},
	}
	for _, tc := range tests {
		c, g, err := FindSceneVars(tc.vars, tc.cube, tc.gt, "f.mat")
		if tc.wantErr != "" {
			mustContain(t, err, tc.wantErr, "f.mat")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != tc.wantCube || (g == nil) != (tc.wantGT == "") || (g != nil && g.Name != tc.wantGT) {
			t.Fatalf("got %v %v, want %s %s", c, g, tc.wantCube, tc.wantGT)
		}
	}
}

// realMAT is the ABU airport-1 scene, shared read-only next to the repository.
const realMAT = "../../shared/data/real/abu-airport-1.mat"

// TestMATRealABU checks the reader on a file MATLAB itself wrote: compressed elements, a double
// map stored as uint8, short names in the small element format.
func TestMATRealABU(t *testing.T) {
	b, err := os.ReadFile(realMAT)
	if err != nil {
		t.Skipf("skipping: real scene not available (%v)", err)
	}
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != "0705395c9922948083bdd60a2889300c30d17d901648849705b4f35157b8c780" {
		t.Fatalf("sha256 %s differs from the documented file", got)
	}
	m, err := ParseMAT(b, realMAT)
	if err != nil {
		t.Fatal(err)
	}
	cube, gt, err := FindSceneVars(m.Variables, "", "", realMAT)
	if err != nil {
		t.Fatal(err)
	}
	// MATLAB saved both as class double with narrower storage, which scipy reports as uint16
	// and uint8.
	if fmt.Sprint(cube.Shape) != "[100 100 205]" || cube.DType != "uint16" || cube.Class != "double" {
		t.Fatalf("cube %v %s/%s, want [100 100 205] double stored as uint16", cube.Shape, cube.Class, cube.DType)
	}
	if fmt.Sprint(gt.Shape) != "[100 100]" || gt.Class != "double" || gt.DType != "uint8" {
		t.Fatalf("map %v %s/%s, want [100 100] double stored as uint8", gt.Shape, gt.Class, gt.DType)
	}
	anomalies := 0
	for _, v := range gt.Data {
		if v != 0 {
			anomalies++
		}
	}
	if anomalies != 144 {
		t.Fatalf("%d anomaly pixels, want 144", anomalies)
	}
	// Values read with scipy.io.loadmat (data[r, c, b] in MATLAB's row × column × band order).
	at := func(r, c, b int) float32 { return cube.Data[(r*100+c)*205+b] }
	var total float64
	for _, v := range cube.Data {
		total += float64(v)
	}
	for _, tc := range []struct {
		r, c, b int
		want    float32
	}{{0, 0, 0, 641}, {0, 0, 1, 720}, {0, 0, 4, 1509}, {99, 0, 0, 503}, {0, 99, 0, 836}, {12, 34, 56, 717}, {99, 99, 204, 47}} {
		if got := at(tc.r, tc.c, tc.b); got != tc.want {
			t.Fatalf("data[%d,%d,%d] = %v, want %v", tc.r, tc.c, tc.b, got, tc.want)
		}
	}
	if total != 1380040209 {
		t.Fatalf("sum of the cube %v, want 1380040209", total)
	}
	if gt.Data[0*100+86] != 1 || gt.Data[0*100+85] != 0 {
		t.Fatalf("map[0,85..86] = %v %v, want 0 1", gt.Data[85], gt.Data[86])
	}
	// Where scipy is installed, compare every element against it.
	if exec.Command(pythonPath, "-c", "import scipy.io").Run() != nil {
		t.Log("scipy not available: compared against recorded values only")
		return
	}
	dir := t.TempDir()
	abs, _ := filepath.Abs(realMAT)
	runPython(t, dir, `
import sys, scipy.io, numpy as np
m = scipy.io.loadmat(sys.argv[1])
m["data"].astype("<f8").tofile("data.f64")
m["map"].astype("<f8").tofile("map.f64")
`, abs)
	equalExact(t, "data vs scipy", cube.Data, readF64(t, filepath.Join(dir, "data.f64")))
	equalExact(t, "map vs scipy", gt.Data, readF64(t, filepath.Join(dir, "map.f64")))
}

func TestMATBadInput(t *testing.T) {
	plain, err := os.ReadFile("testdata/mat/scipy_plain.mat")
	if err != nil {
		t.Fatal(err)
	}
	comp, _ := os.ReadFile("testdata/mat/scipy_compressed.mat")
	narrow, _ := os.ReadFile("testdata/mat/narrow.mat")
	dims := []byte{5, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0}
	at := strings.Index(string(narrow), string(dims))
	if at < 0 {
		t.Fatal("dims of narrow.mat:data not found")
	}
	patch := func(b []byte, off int, v ...byte) []byte {
		out := append([]byte(nil), b...)
		copy(out[off:], v)
		return out
	}
	corrupt := append([]byte(nil), comp...)
	for i := 200; i < 260; i++ {
		corrupt[i] ^= 0x5a
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", plain[:100], "too short"},
		{"not MAT", []byte(strings.Repeat("hello ", 30)), "endian indicator"},
		{"bad version", patch(plain, 124, 2, 0), "header version"},
		{"truncated", plain[:len(plain)/2], "file truncated?"},
		{"corrupt zlib", corrupt, "compressed element"},
		{"dims disagree with data", patch(narrow, at+16, 3), "real part holds 12 bytes of int8 but dimensions [2 3 3] need 18"},
		{"negative dim", patch(narrow, at+8, 0xff, 0xff, 0xff, 0xff), "negative dimension"},
		{"unknown data type", patch(narrow, at+32, 99), "real part stored as element type 99"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMAT(tc.b, "bad.mat")
			mustContain(t, err, "bad.mat", tc.want)
		})
	}
}
