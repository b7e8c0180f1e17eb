package nodes

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/torch"
)

// scaleNode is the test plugin kind: a TorchScript module computing x*scale, plus an
// offset parameter applied in Go.
type scaleNode struct {
	Base
	mod    *torch.Module
	offset float64
	params map[string]any
}

func (n *scaleNode) Inputs() []PortSpec {
	return []PortSpec{{Name: "x", DType: torch.Float32, Shape: Shape("B", "H", "W", "C")}}
}
func (n *scaleNode) Outputs() []PortSpec {
	return []PortSpec{{Name: "y", DType: torch.Float32, Shape: Shape("B", "H", "W", "C")}}
}
func (n *scaleNode) Stages() []Stage        { return nil }
func (n *scaleNode) Params() map[string]any { return n.params }
func (n *scaleNode) Close()                 { n.mod.Free() }
func (n *scaleNode) Forward(ctx *Context, in map[string]any) (map[string]any, error) {
	s := ctx.Scope
	out := s.Forward(n.mod, in["x"].(*torch.Tensor))
	if s.Err() != nil {
		return nil, s.Err()
	}
	return map[string]any{"y": s.AddScalar(out[0], n.offset)}, s.Err()
}

func init() {
	RegisterPluginKind("test_scale", func(name string, files map[string]string, params map[string]any) (Node, error) {
		r := NewParamReader(name, params)
		off := r.Float("offset", 0)
		r.String("mode", "fast", "fast", "exact")
		if err := r.Done(); err != nil {
			return nil, err
		}
		path, ok := files["model"]
		if !ok {
			return nil, fmt.Errorf("node %q: no file \"model\"", name)
		}
		m, err := torch.LoadModule(path, torch.CPU)
		if err != nil {
			return nil, err
		}
		return &scaleNode{Base: Base{NodeName: name, TypeName: "test_scale"}, mod: m, offset: off, params: r.Resolved()}, nil
	})
}

func needGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: plugin tests need real git")
	}
	home := t.TempDir()
	for k, v := range map[string]string{
		"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
		"GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com",
		"HOME": home, "XDG_CONFIG_HOME": home, "GIT_CONFIG_NOSYSTEM": "1",
	} {
		t.Setenv(k, v)
	}
	SetPluginCacheDir(filepath.Join(t.TempDir(), "cache"))
	t.Cleanup(func() { SetPluginCacheDir("") })
}

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "init.defaultBranch=main"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// writeScaleModel writes a TorchScript module computing x*scale and returns its sha256.
func writeScaleModel(t *testing.T, path string, scale float64) string {
	t.Helper()
	m, err := torch.NewModule("Scale")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.SetAttrFloat("scale", scale); err != nil {
		t.Fatal(err)
	}
	if err := m.Define("def forward(self, x):\n    return x * self.scale\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
	sum, err := FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

const manifestTmpl = `version: 1
plugin: acme
nodes:
  - name: acme.Scale
    kind: test_scale
    files:
      - {name: model, path: %s, sha256: %s}
    ports:
      inputs: [{name: x, dtype: float32, shape: [B, H, W, C]}]
      outputs: [{name: y, dtype: float32, shape: [B, H, W, C]}]
    params:
      offset: {default: 0.0}
      mode: {default: fast, allowed: [fast, exact]}
  - name: acme.Other
    kind: test_scale
    files:
      - {name: model, path: %s, sha256: %s}
    ports: {inputs: [], outputs: []}
`

// makePluginDir writes a plugin folder with a model scaling by scale.
func makePluginDir(t *testing.T, dir string, scale float64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := writeScaleModel(t, filepath.Join(dir, "models", "scale.pt"), scale)
	man := fmt.Sprintf(manifestTmpl, "models/scale.pt", sum, "models/scale.pt", sum)
	if err := os.WriteFile(filepath.Join(dir, PluginManifestFile), []byte(man), 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeRepo creates a bare repository with the plugin committed and tagged v1
// (lightweight) and v2 (annotated); it returns the file:// URL and the work clone.
func makeRepo(t *testing.T) (string, string) {
	t.Helper()
	root := t.TempDir()
	bare := filepath.Join(root, "acme.git")
	work := filepath.Join(root, "work")
	runGit(t, root, "init", "-q", "--bare", bare)
	runGit(t, root, "clone", "-q", bare, work)
	makePluginDir(t, work, 2.5)
	runGit(t, work, "add", ".")
	runGit(t, work, "commit", "-q", "-m", "plugin v1")
	runGit(t, work, "tag", "v1")
	runGit(t, work, "tag", "-a", "v2", "-m", "annotated")
	runGit(t, work, "push", "-q", "origin", "HEAD:refs/heads/main", "v1", "v2")
	return "file://" + bare, work
}

// checkScale builds the plugin node and compares its output with x*scale+offset
// computed in float64.
func checkScale(t *testing.T, r *Registry, params map[string]any, scale, offset float64) {
	t.Helper()
	n, err := r.New("acme.Scale", "scale", params)
	if err != nil {
		t.Fatal(err)
	}
	defer n.(Closer).Close()
	if n.Type() != "acme.Scale" {
		t.Fatalf("type %q", n.Type())
	}
	s := torch.NewScope()
	defer s.Close()
	rng := rand.New(rand.NewPCG(9, uint64(scale*10)))
	x := randData(rng, 2*3*3*2)
	p := NewPipeline("plug", r)
	mustAdd(t, p, n)
	outs, err := p.Run(&Context{Stage: StageInference, Scope: s}, map[string]any{"x": s.FromFloat32(x, 2, 3, 3, 2)}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y, err := outs.Tensor("scale", "y")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := y.Float32s()
	for i, v := range x {
		want := float64(v)*scale + offset
		if math.Abs(float64(got[i])-want) > 1e-5*(1+math.Abs(want)) {
			t.Fatalf("element %d: got %v want %v", i, got[i], want)
		}
	}
}

func TestPluginGit(t *testing.T) {
	needGit(t)
	url, work := makeRepo(t)
	head := runGit(t, work, "rev-parse", "HEAD")

	t.Run("lightweight tag", func(t *testing.T) {
		r := NewRegistry()
		if err := r.LoadPlugin("acme", PluginConfig{Repo: url, Tag: "v1", Provides: []string{"acme.Scale"}}); err != nil {
			t.Fatal(err)
		}
		checkScale(t, r, map[string]any{"offset": 0.25}, 2.5, 0.25)
		ps := r.Plugins()
		if len(ps) != 1 || ps[0].Commit != head || ps[0].Source != url || strings.Join(ps[0].Provides, ",") != "acme.Scale" {
			t.Fatalf("plugins %+v", ps)
		}
		if _, ok := r.Lookup("acme.Other"); ok {
			t.Fatal("acme.Other registered although not provided")
		}
		if _, ok := Builtins.Lookup("acme.Scale"); ok {
			t.Fatal("plugin leaked into Builtins")
		}
		// Same config again: no-op; unload removes the types.
		if err := r.LoadPlugin("acme", PluginConfig{Repo: url, Tag: "v1", Provides: []string{"acme.Scale"}}); err != nil {
			t.Fatal(err)
		}
		if err := r.UnloadPlugin("acme"); err != nil {
			t.Fatal(err)
		}
		if _, ok := r.Lookup("acme.Scale"); ok || len(r.Plugins()) != 0 {
			t.Fatal("unload left the type behind")
		}
		wantErr(t, r.UnloadPlugin("acme"), "not loaded")
	})

	t.Run("annotated tag and cache reuse", func(t *testing.T) {
		r := NewRegistry()
		if err := r.LoadPlugin("acme", PluginConfig{Repo: url, Tag: "v2"}); err != nil {
			t.Fatal(err)
		}
		dir := r.Plugins()[0].Dir
		marker := filepath.Join(dir, "marker")
		if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		r2 := NewRegistry()
		if err := r2.LoadPlugin("acme", PluginConfig{Repo: url, Tag: "v2"}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Fatal("second load re-cloned the cache (marker gone)")
		}
		if r2.Plugins()[0].Commit != head {
			t.Fatalf("annotated tag resolved to %s, want %s", r2.Plugins()[0].Commit, head)
		}
		checkScale(t, r2, nil, 2.5, 0)
		// Offline reuse: with the remote unreachable a verified cache is still used.
		bare := strings.TrimPrefix(url, "file://")
		if err := os.Rename(bare, bare+".away"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(bare+".away", bare)
		for _, pin := range []string{"", head} {
			if err := NewRegistry().LoadPlugin("acme", PluginConfig{Repo: url, Tag: "v2", Commit: pin}); err != nil {
				t.Fatalf("offline reuse (pin %q): %v", pin, err)
			}
		}
	})

	t.Run("commit pin", func(t *testing.T) {
		if err := NewRegistry().LoadPlugin("pinned", PluginConfig{Repo: url, Tag: "v1", Commit: head[:12]}); err != nil {
			t.Fatal(err)
		}
		err := NewRegistry().LoadPlugin("pinbad", PluginConfig{Repo: url, Tag: "v1", Commit: strings.Repeat("a", 40)})
		wantErr(t, err, "pins commit "+strings.Repeat("a", 40), head)
		err = NewRegistry().LoadPlugin("pinned", PluginConfig{Repo: url, Tag: "v1", Commit: strings.Repeat("b", 40)})
		wantErr(t, err, "cached checkout", "pins commit")
	})

	t.Run("missing tag and unreachable repo", func(t *testing.T) {
		wantErr(t, NewRegistry().LoadPlugin("acme", PluginConfig{Repo: url, Tag: "v9"}), "tag v9 not found")
		wantErr(t, NewRegistry().LoadPlugin("nowhere", PluginConfig{Repo: "file:///nonexistent/repo.git", Tag: "v1"}), "unreachable")
		// A cache cloned from another repository is not reused for this one.
		wantErr(t, NewRegistry().LoadPlugin("acme", PluginConfig{Repo: "file:///nonexistent/repo.git", Tag: "v1"}), "was cloned from")
		wantErr(t, NewRegistry().LoadPlugin("acme", PluginConfig{Repo: url}), "needs a tag")
	})

	t.Run("moved tag", func(t *testing.T) {
		r := NewRegistry()
		if err := r.LoadPlugin("mover", PluginConfig{Repo: url, Tag: "v1"}); err != nil {
			t.Fatal(err)
		}
		makePluginDir(t, work, 4)
		runGit(t, work, "commit", "-q", "-am", "new model")
		runGit(t, work, "tag", "-f", "v1")
		runGit(t, work, "push", "-q", "-f", "origin", "v1")
		newHead := runGit(t, work, "rev-parse", "HEAD")
		err := NewRegistry().LoadPlugin("mover", PluginConfig{Repo: url, Tag: "v1"})
		wantErr(t, err, "tag v1 moved", newHead, head, "clear the cache")
		if err := NewRegistry().ClearPluginCache("mover"); err != nil {
			t.Fatal(err)
		}
		r2 := NewRegistry()
		if err := r2.LoadPlugin("mover", PluginConfig{Repo: url, Tag: "v1"}); err != nil {
			t.Fatal(err)
		}
		if r2.Plugins()[0].Commit != newHead {
			t.Fatal("after clearing the cache the new commit was not taken")
		}
		checkScale(t, r2, nil, 4, 0)
	})

	t.Run("tampered cache", func(t *testing.T) {
		r := NewRegistry()
		if err := r.LoadPlugin("tamper", PluginConfig{Repo: url, Tag: "v2"}); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(r.Plugins()[0].Dir, "models", "scale.pt")
		if err := os.WriteFile(f, []byte("not a model"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := r.New("acme.Scale", "s", nil)
		wantErr(t, err, "models/scale.pt", "sha256 mismatch")
		wantErr(t, NewRegistry().LoadPlugin("tamper", PluginConfig{Repo: url, Tag: "v2"}), "sha256 mismatch")
	})
}

func TestPluginLocal(t *testing.T) {
	needGit(t)
	root := t.TempDir()
	good := filepath.Join(root, "good")
	makePluginDir(t, good, 1.5)

	t.Run("local folder and params", func(t *testing.T) {
		r := NewRegistry()
		if err := r.LoadPlugin("local", PluginConfig{Path: good}); err != nil {
			t.Fatal(err)
		}
		checkScale(t, r, map[string]any{"mode": "exact", "offset": -1}, 1.5, -1)
		_, err := r.New("acme.Scale", "s", map[string]any{"mode": "slow"})
		wantErr(t, err, `parameter "mode"`, "slow", "not allowed")
		_, err = r.New("acme.Scale", "s", map[string]any{"speed": 1})
		wantErr(t, err, `unknown parameter "speed"`, "mode, offset")
		_, err = r.New("acme.Scale", "s", map[string]any{"offset": "big"})
		wantErr(t, err, `parameter "offset"`)
		// A pipeline holding a plugin node saves and restores through the plugin.
		n, err := r.New("acme.Scale", "s", map[string]any{"offset": 0.5})
		if err != nil {
			t.Fatal(err)
		}
		p := NewPipeline("pp", r)
		mustAdd(t, p, n)
		path := filepath.Join(t.TempDir(), "p.yaml")
		if err := p.Save(path); err != nil {
			t.Fatal(err)
		}
		p.Close()
		q, err := Load(path, r, torch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer q.Close()
		qn, _ := q.Node("s")
		if qn.Type() != "acme.Scale" || qn.Params()["offset"] != 0.5 {
			t.Fatalf("restored %s %v", qn.Type(), qn.Params())
		}
		if _, err := Load(path, NewRegistry(), torch.CPU); err == nil {
			t.Fatal("a registry without the plugin should not rebuild its node")
		}
	})

	bad := func(t *testing.T, mutate func(dir string) string) error {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "p")
		makePluginDir(t, dir, 1)
		sum, _ := FileSHA256(filepath.Join(dir, "models", "scale.pt"))
		path := mutate(dir)
		man := fmt.Sprintf(manifestTmpl, path, sum, "models/scale.pt", sum)
		if err := os.WriteFile(filepath.Join(dir, PluginManifestFile), []byte(man), 0o644); err != nil {
			t.Fatal(err)
		}
		return NewRegistry().LoadPlugin("bad", PluginConfig{Path: dir})
	}
	outside := filepath.Join(root, "outside.pt")
	writeScaleModel(t, outside, 1)
	cases := []struct {
		name   string
		mutate func(dir string) string
		want   []string
	}{
		{"dotdot", func(dir string) string { return "../outside.pt" }, []string{`"../outside.pt" leaves the plugin folder`}},
		{"absolute", func(dir string) string { return outside }, []string{"must be relative"}},
		{"symlink out", func(dir string) string {
			if err := os.Symlink(outside, filepath.Join(dir, "link.pt")); err != nil {
				t.Fatal(err)
			}
			return "link.pt"
		}, []string{`"link.pt" resolves to`, "outside the plugin folder"}},
		{"symlink inside is fine", func(dir string) string {
			os.Symlink(filepath.Join(dir, "models", "scale.pt"), filepath.Join(dir, "in.pt"))
			return "in.pt"
		}, nil},
		{"missing file", func(dir string) string { return "models/none.pt" }, []string{"models/none.pt"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := bad(t, c.mutate)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, c.want...)
		})
	}

	t.Run("provides undeclared", func(t *testing.T) {
		err := NewRegistry().LoadPlugin("x", PluginConfig{Path: good, Provides: []string{"acme.Nope"}})
		wantErr(t, err, `provides "acme.Nope"`, "declared: acme.Scale, acme.Other")
	})

	t.Run("bad manifests", func(t *testing.T) {
		for _, c := range []struct{ body, want string }{
			{"version: 2\nplugin: a\nnodes: [{name: a.B, kind: test_scale}]\n", "version 2"},
			{"version: 1\nplugin: a\nnodes: [{name: a.B, kind: test_scale}]\nhooks: [x]\n", "hooks"},
			{"version: 1\nplugin: a\nnodes: [{name: a.B, kind: python_script}]\n", `unknown kind "python_script"`},
			{"version: 1\nplugin: a\nnodes: []\n", "declares no nodes"},
		} {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, PluginManifestFile), []byte(c.body), 0o644)
			wantErr(t, NewRegistry().LoadPlugin("a", PluginConfig{Path: dir}), c.want)
		}
		wantErr(t, NewRegistry().LoadPlugin("a", PluginConfig{Path: t.TempDir()}), PluginManifestFile)
		wantErr(t, NewRegistry().LoadPlugin("a", PluginConfig{Path: good, Repo: "x"}), "not both")
	})

	t.Run("config keys", func(t *testing.T) {
		cfg, err := DecodePluginConfig(map[string]any{"repo": "https://x/y.git", "tag": "v1", "provides": []any{"a.B"}})
		if err != nil || cfg.Repo != "https://x/y.git" || cfg.Tag != "v1" || cfg.Provides[0] != "a.B" {
			t.Fatalf("%+v %v", cfg, err)
		}
		_, err = DecodePluginConfig(map[string]any{"repo": "https://x/y.git", "ref": "v1"})
		wantErr(t, err, "ref")
	})

	t.Run("manifest with two plugins", func(t *testing.T) {
		mdir := filepath.Join(root, "cfg")
		os.MkdirAll(mdir, 0o755)
		second := filepath.Join(root, "second")
		makePluginDir(t, second, 3)
		// The second plugin declares the same type names; provide disjoint ones.
		body := "plugins:\n  one: {path: ../good, provides: [acme.Scale]}\n  two: {path: ../second, provides: [acme.Other]}\n"
		mpath := filepath.Join(mdir, "plugins.yaml")
		os.WriteFile(mpath, []byte(body), 0o644)
		r := NewRegistry()
		if err := r.LoadPluginManifest(mpath); err != nil {
			t.Fatal(err)
		}
		ps := r.Plugins()
		if len(ps) != 2 || ps[0].Name != "one" || ps[1].Name != "two" || ps[1].Dir != second {
			t.Fatalf("plugins %+v", ps)
		}
		checkScale(t, r, nil, 1.5, 0)
		if ti, ok := r.Lookup("acme.Other"); !ok || ti.Plugin != "two" {
			t.Fatal("acme.Other not registered by plugin two")
		}
		// Overlapping types are refused and name the owner.
		os.WriteFile(mpath, []byte("plugins:\n  three: {path: ../second}\n"), 0o644)
		wantErr(t, r.LoadPluginManifest(mpath), "already registered", "plugin one")
		os.WriteFile(mpath, []byte("plugins:\n  four: {path: ../second, branch: main}\n"), 0o644)
		wantErr(t, NewRegistry().LoadPluginManifest(mpath), "branch")
	})
}
