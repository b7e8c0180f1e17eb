package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testpy"
	"github.com/spectraclip/spectraclip/torch"
)

// How far a compiled (AOTInductor, fp32 CPU) built-in detector's scores may be from the same
// detector run as TorchScript. Inductor fuses and reorders the float32 reductions (feature
// means, the covariance's bmm, the Mahalanobis sum); measured on 32×32 N(0,1) images, each of
// the two is up to ~6e-6 relative from the float64 reference (referenceBuiltin), so two
// correct float32 runs may be ~1.2e-5 apart at a single pixel. Hence three checks:
//   - relative to the scores' scale: max|aoti - ts| <= aotiRelTol * max|ts|;
//   - per score: |aoti - ts| <= aotiElemRelTol * |ts| + aotiAbsFloor;
//   - against float64: the package is no less accurate than TorchScript (its largest relative
//     error from referenceBuiltin at most 2× TorchScript's, plus aotiAbsFloor).
const (
	aotiRelTol     = 1e-5
	aotiElemRelTol = 3e-5
	aotiAbsFloor   = 1e-7
)

// exportBuiltinAOTI writes the built-in detector (image size size) as TorchScript from Go and
// compiles it into a .pt2 package with scripts/export_adaclip.py --aoti through the test
// Python; it skips, saying why, where that Python cannot compile packages.
func exportBuiltinAOTI(t testing.TB, dir string, size, maxBatch int) (ts, pt2 string) {
	t.Helper()
	if err := torch.AOTIAvailable(); err != nil {
		t.Skipf("%v (TestAOTIRefusedByOldLibTorch checks the refusal)", err)
	}
	if testing.Short() {
		t.Skip("compiles a package with AOTInductor (about a minute on 2 cores); skipped with -short")
	}
	script := filepath.Join("..", "..", "scripts", "export_adaclip.py")
	if _, err := os.Stat(script); err != nil {
		t.Skip("scripts/export_adaclip.py is not there")
	}
	py := testpy.Python()
	if _, err := os.Stat(py); err != nil {
		t.Skipf("%s is not there", py)
	}
	ts = filepath.Join(dir, fmt.Sprintf("builtin-%d.pt", size))
	if err := WriteBuiltin(ts, BuiltinOptions{ImageSize: size}); err != nil {
		t.Fatal(err)
	}
	pt2 = filepath.Join(dir, fmt.Sprintf("builtin-%d.pt2", size))
	cmd := exec.Command(py, script, "--aoti", "--builtin-from", ts, "--out", pt2, "--device", "cpu",
		"--max-batch", strconv.Itoa(maxBatch))
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "--aoti needs torch 2.6 or newer") {
		t.Skipf("%s cannot compile packages (make ... TORCH=pip sets PYTHON to the venv's torch): %s", py, lastLine(out))
	}
	if err != nil {
		t.Fatalf("export_adaclip.py --aoti --builtin-from: %v\n%s", err, out)
	}
	t.Logf("export: %s", lastLine(grepLines(out, "export_adaclip:")))
	return ts, pt2
}

func grepLines(b []byte, sub string) []byte {
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, sub) {
			keep = append(keep, l)
		}
	}
	return []byte(strings.Join(keep, "\n"))
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// TestBuiltinAOTIRoundTrip: the built-in detector written by Go as TorchScript, compiled by
// AOTInductor through Python, loaded back in Go, gives the TorchScript's scores on fresh
// random inputs at batch sizes 1 and 3 (one package, dynamic batch), fp32 on the CPU.
func TestBuiltinAOTIRoundTrip(t *testing.T) {
	const size = 32
	tsPath, pt2 := cachedBuiltinAOTI(t, size, 4)

	ts, err := torch.LoadModule(tsPath, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Free()
	pkg, err := torch.LoadAOTI(pt2, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer pkg.Close()

	md := pkg.Metadata()
	for k, want := range map[string]string{
		"image_size": strconv.Itoa(size), "detector_name": BuiltinName, "contract_version": strconv.Itoa(ContractVersion),
		"backbone": "none", "weight_name": "none", "prompt": "",
		"spectraclip.device": "cpu", "spectraclip.inputs": "float32[1..4,3,32,32]", "AOTI_DEVICE_KEY": "cpu",
	} {
		if got, ok := md[k]; !ok || got != want {
			t.Errorf("metadata %s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	if v := md["spectraclip.torch_version"]; !strings.HasPrefix(v, torch.Version()) {
		t.Errorf("metadata spectraclip.torch_version %q, this LibTorch %s", v, torch.Version())
	}

	r := rand.New(rand.NewPCG(28, 2811))
	base := torch.LiveTensors()
	for _, b := range []int{1, 3} {
		x := make([]float32, b*3*size*size)
		for i := range x {
			x[i] = float32(r.NormFloat64()) // CLIP-normalised pixels are roughly N(0,1)
		}
		s := torch.NewScope()
		s.SetGradEnabled(false)
		in := s.FromFloat32(x, int64(b), 3, size, size)
		want := s.Forward(ts, in)
		got := s.RunAOTI(pkg, in)
		if err := s.Err(); err != nil {
			s.Close()
			t.Fatalf("batch %d: %v", b, err)
		}
		// the float64 reference, image by image
		var ref [2][]float64
		for i := 0; i < b; i++ {
			pix, img := referenceBuiltin(x[i*3*size*size:(i+1)*3*size*size], size, size, []int{3, 7, 15}, 1e-3)
			ref[0] = append(ref[0], pix...)
			ref[1] = append(ref[1], img)
		}
		for i, name := range []string{"pixel_scores", "image_scores"} {
			if !slices.Equal(got[i].Shape(), want[i].Shape()) {
				t.Fatalf("batch %d %s: shape %v, TorchScript %v", b, name, got[i].Shape(), want[i].Shape())
			}
			g, err1 := got[i].Float32s()
			w, err2 := want[i].Float32s()
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			worstAbs, worstRel, scale, errAOTI, errTS := 0.0, 0.0, 0.0, 0.0, 0.0
			for j := range w {
				gj, wj, rj := float64(g[j]), float64(w[j]), ref[i][j]
				d := math.Abs(gj - wj)
				worstAbs = math.Max(worstAbs, d)
				scale = math.Max(scale, math.Abs(wj))
				if wj != 0 {
					worstRel = math.Max(worstRel, d/math.Abs(wj))
				}
				if d > aotiElemRelTol*math.Abs(wj)+aotiAbsFloor {
					t.Errorf("batch %d %s[%d]: aoti %.9g, TorchScript %.9g (float64 %.9g)", b, name, j, gj, wj, rj)
				}
				if rj != 0 {
					errAOTI = math.Max(errAOTI, math.Abs(gj-rj)/math.Abs(rj))
					errTS = math.Max(errTS, math.Abs(wj-rj)/math.Abs(rj))
				}
			}
			if worstAbs > aotiRelTol*scale {
				t.Errorf("batch %d %s: max |aoti - TorchScript| %.3g > %g × max|TorchScript| %.3g", b, name, worstAbs, aotiRelTol, scale)
			}
			if errAOTI > 2*errTS+aotiAbsFloor {
				t.Errorf("batch %d %s: relative error from float64 %.3g, TorchScript's %.3g", b, name, errAOTI, errTS)
			}
			t.Logf("batch %d %s: max |aoti - ts| %.3g (%.3g of the scale, %.3g per score); from float64: aoti %.3g, ts %.3g",
				b, name, worstAbs, worstAbs/scale, worstRel, errAOTI, errTS)
		}
		s.Close()
	}
	if got := torch.LiveTensors(); got != base {
		t.Errorf("live tensors %d -> %d", base, got)
	}
}

// TestAOTIRefusedByOldLibTorch: on a LibTorch without AOTInductor (Debian's 1.13) a package
// is refused with one line that says what is needed and what this build links.
func TestAOTIRefusedByOldLibTorch(t *testing.T) {
	if torch.AOTIAvailable() == nil {
		t.Skipf("LibTorch %s runs packages (TestBuiltinAOTIRoundTrip)", torch.Version())
	}
	p := filepath.Join(t.TempDir(), "builtin.pt2")
	if err := os.WriteFile(p, []byte("PK\x05\x06"+strings.Repeat("\x00", 18)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := torch.LoadAOTI(p, torch.CPU)
	want := "compiled detectors (.pt2, AOTInductor) need LibTorch 2.6 or newer; this build links LibTorch " +
		strings.Join(strings.Split(torch.Version(), ".")[:2], ".") + ".x"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
		t.Fatalf("got %v, want %q naming %s", err, want, p)
	}
}
