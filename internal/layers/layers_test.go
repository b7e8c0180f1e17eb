// Package layers holds the test of the house's layering: which packages may import which
// (README "Layout", DESIGN.md "Layers"), and the few things that must happen in one place.
package layers

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/spectraclip/spectraclip/"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	CgoFiles   []string
	GoFiles    []string
	Dir        string
}

// list runs `go list -json -deps=false` over the module's packages (production files only).
func list(t *testing.T) map[string]*pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]*pkg{}
	dec := json.NewDecoder(bufio.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = &p
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	return pkgs
}

func ours(paths []string) []string {
	var out []string
	for _, p := range paths {
		if strings.HasPrefix(p, module) {
			out = append(out, strings.TrimPrefix(p, module))
		}
	}
	return out
}

// family is the top folder of a package ("nodes/detect" → "nodes", "internal/x" → "internal").
func family(p string) string {
	if p == "scene/scenespec" {
		return "scenespec"
	}
	return strings.SplitN(p, "/", 2)[0]
}

// allowed lists, per folder, the folders of ours it may import (README's Layout table). A
// folder may always import its own sub-packages and internal/.
var allowed = map[string][]string{
	"torch":     {},
	"dataset":   {},
	"dist":      {"torch"},
	"nodes":     {"torch", "dataset", "scripts"},
	"scripts":   {},
	"configs":   {},
	"config":    {"dataset", "configs"},
	"scenespec": {"config"},
	"run":       {"config", "nodes", "dataset", "dist", "torch"},
	"report":    {},
	"trainer":   {"run", "config", "nodes", "dataset", "report", "torch"},
	"compare":   {"trainer", "run", "config", "nodes", "report"},
	"scene":     {"trainer", "compare", "run", "config", "scenespec", "nodes", "dataset", "torch", "report"},
	"infer":     {"run", "config", "nodes", "dataset", "report", "torch"},
	"bench":     {"run", "config", "nodes", "dataset", "torch"},
	"sweep":     {"run", "config", "scenespec", "nodes", "dataset", "report"},
	"serve":     {"run", "bench", "config", "nodes", "dataset", "report", "torch"},
}

// TestLayers: no package imports a folder its layer may not (a lower layer never imports a
// higher one), and serve, infer, bench and sweep do not depend on trainer even indirectly.
func TestLayers(t *testing.T) {
	pkgs := list(t)
	for name, p := range pkgs {
		f := family(name)
		if f == "cmd" || f == "chaos" || strings.HasPrefix(name, "internal/tools") {
			continue
		}
		ok, known := allowed[f]
		if !known && f != "internal" {
			t.Errorf("package %s: its folder %s is not in the layer table (README Layout, this test)", name, f)
			continue
		}
		for _, imp := range ours(p.Imports) {
			g := family(imp)
			if g == f || g == "internal" || slices.Contains(ok, g) {
				continue
			}
			t.Errorf("%s imports %s: %s may import only %v (and internal/)", name, imp, f, ok)
		}
	}
	for _, name := range []string{"serve", "infer", "bench", "sweep", "run", "config"} {
		p, ok := pkgs[name]
		if !ok {
			t.Fatalf("no package %s", name)
		}
		deps := exec.Command("go", "list", "-deps", "./"+name)
		deps.Dir = "../.."
		b, err := deps.Output()
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(strings.Fields(string(b)), module+"trainer") {
			t.Errorf("%s depends on trainer (through %v)", name, ours(p.Imports))
		}
	}
}

// TestCgoOnlyInTorch: only package torch uses cgo.
func TestCgoOnlyInTorch(t *testing.T) {
	for name, p := range list(t) {
		if len(p.CgoFiles) > 0 && name != "torch" {
			t.Errorf("%s has cgo files %v; only torch may", name, p.CgoFiles)
		}
	}
}

// TestOnePlace: some things happen in exactly one package (issue #27): files and directories
// are renamed into place by internal/atomicfile only; LibTorch's thread count is set and
// device strings are parsed only by run's placement; no package init() exits the process
// or fills another package's variable.
func TestOnePlace(t *testing.T) {
	rules := []struct {
		re    *regexp.Regexp
		where string // the one package (folder relative to the module) where it may appear
	}{
		{regexp.MustCompile(`\bos\.Rename\(`), "internal/atomicfile"},
		{regexp.MustCompile(`\btorch\.SetNumThreads\(`), "run"},
		{regexp.MustCompile(`\btorch\.ParseDevice\(`), "run"},
		{regexp.MustCompile(`\btorch\.SetAllowTF32\(`), "run"},
	}
	initExit := regexp.MustCompile(`(?s)func init\(\) \{.*?\n\}`)
	for name, p := range list(t) {
		if name == "torch" {
			continue // the definitions
		}
		for _, f := range p.GoFiles {
			b, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			src := string(b)
			for _, r := range rules {
				if r.re.MatchString(src) && name != r.where {
					t.Errorf("%s/%s: %s outside %s", name, f, r.re, r.where)
				}
			}
			for _, body := range initExit.FindAllString(src, -1) {
				if strings.Contains(body, "os.Exit") {
					t.Errorf("%s/%s: a package init() exits the process", name, f)
				}
				if regexp.MustCompile(`\b[a-z]+\.[A-Z]\w* = `).MatchString(body) {
					t.Errorf("%s/%s: a package init() sets another package's variable:\n%s", name, f, body)
				}
			}
		}
	}
}
