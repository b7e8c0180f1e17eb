package nodes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
	"github.com/spectraclip/spectraclip/torch"
	"go.yaml.in/yaml/v3"
)

// PluginConfig says where a plugin comes from: a git repository pinned by tag (and
// optionally by commit), or a local folder. Provides names the manifest's nodes to
// register; empty means all of them.
type PluginConfig struct {
	Repo     string   `yaml:"repo,omitempty" json:"repo,omitempty" mapstructure:"repo"`
	Tag      string   `yaml:"tag,omitempty" json:"tag,omitempty" mapstructure:"tag"`
	Commit   string   `yaml:"commit,omitempty" json:"commit,omitempty" mapstructure:"commit"`
	Path     string   `yaml:"path,omitempty" json:"path,omitempty" mapstructure:"path"`
	Provides []string `yaml:"provides,omitempty" json:"provides,omitempty" mapstructure:"provides"`
}

// DecodePluginConfig reads a plugin config from a generic map, rejecting unknown keys
// (the reference forbids extra keys too, so a misspelt "ref:" is caught).
func DecodePluginConfig(m map[string]any) (PluginConfig, error) {
	var cfg PluginConfig
	if err := strictRemarshal(m, &cfg); err != nil {
		return cfg, fmt.Errorf("plugin config: %w", err)
	}
	return cfg, nil
}

// PluginManifestFile is the file a plugin folder must hold.
const PluginManifestFile = "spectraclip-plugin.yaml"

// PluginManifest is the content of spectraclip-plugin.yaml.
type PluginManifest struct {
	Version int                  `yaml:"version"`
	Plugin  string               `yaml:"plugin"`
	Nodes   []PluginNodeManifest `yaml:"nodes"`
}

// PluginNodeManifest declares one node a plugin provides.
type PluginNodeManifest struct {
	Name   string                     `yaml:"name"`
	Kind   string                     `yaml:"kind"`
	Doc    string                     `yaml:"doc,omitempty"`
	Files  []PluginFile               `yaml:"files"`
	Ports  PluginPorts                `yaml:"ports"`
	Params map[string]PluginParamSpec `yaml:"params,omitempty"`
}

// PluginFile is one file of a plugin node, checked by sha256. Name is the logical name
// the kind builder sees; it defaults to Path.
type PluginFile struct {
	Name   string `yaml:"name,omitempty"`
	Path   string `yaml:"path"`
	SHA256 string `yaml:"sha256"`
}

// PluginPorts are the ports a plugin node declares; the built node must have them.
type PluginPorts struct {
	Inputs  []PluginPort `yaml:"inputs"`
	Outputs []PluginPort `yaml:"outputs"`
}

// PluginPort declares a port: kind "tensor" (default) or "value", dtype ("any" or a
// torch dtype name) and shape.
type PluginPort struct {
	Name     string   `yaml:"name"`
	Kind     string   `yaml:"kind,omitempty"`
	DType    string   `yaml:"dtype,omitempty"`
	Shape    []string `yaml:"shape,omitempty"`
	Optional bool     `yaml:"optional,omitempty"`
	Variadic bool     `yaml:"variadic,omitempty"`
	Doc      string   `yaml:"doc,omitempty"`
}

// PluginParamSpec is a parameter a plugin node accepts, with its default and, when not
// empty, the only values allowed.
type PluginParamSpec struct {
	Default any    `yaml:"default"`
	Allowed []any  `yaml:"allowed,omitempty"`
	Doc     string `yaml:"doc,omitempty"`
}

// PluginKindFactory builds a node of a built-in kind from a plugin's verified files
// (logical name → absolute path) and merged parameters.
type PluginKindFactory func(name string, files map[string]string, params map[string]any) (Node, error)

var (
	kindsMu     sync.RWMutex
	pluginKinds = map[string]PluginKindFactory{}

	cacheMu       sync.RWMutex
	cacheOverride string

	// GitTimeout bounds each git command a plugin load runs.
	GitTimeout = 2 * time.Minute
)

// RegisterPluginKind makes a built-in kind available to plugin manifests. It panics on a
// duplicate, a start-up programming error.
func RegisterPluginKind(kind string, f PluginKindFactory) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, ok := pluginKinds[kind]; ok {
		panic(fmt.Sprintf("nodes: plugin kind %q registered twice", kind))
	}
	pluginKinds[kind] = f
}

// PluginKinds lists the registered plugin kinds.
func PluginKinds() []string {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	var out []string
	for k := range pluginKinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func lookupKind(kind string) (PluginKindFactory, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	f, ok := pluginKinds[kind]
	return f, ok
}

// SetPluginCacheDir overrides where git plugins are checked out ("" restores the default).
func SetPluginCacheDir(dir string) {
	cacheMu.Lock()
	cacheOverride = dir
	cacheMu.Unlock()
}

// PluginCacheDir returns the plugin cache: SetPluginCacheDir, else
// $SPECTRACLIP_PLUGIN_CACHE, else $XDG_CACHE_HOME/spectraclip/plugins, else
// ~/.cache/spectraclip/plugins.
func PluginCacheDir() string {
	cacheMu.RLock()
	o := cacheOverride
	cacheMu.RUnlock()
	if o != "" {
		return o
	}
	if e := os.Getenv("SPECTRACLIP_PLUGIN_CACHE"); e != "" {
		return e
	}
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "spectraclip", "plugins")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return filepath.Join(os.TempDir(), "spectraclip-plugins")
	}
	return filepath.Join(home, ".cache", "spectraclip", "plugins")
}

var pluginNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// LoadPlugin fetches (git) or opens (local folder) a plugin, checks its manifest and files
// and registers the nodes it provides. A relative local path is taken from the current
// directory. Loading the same plugin again with the same config does nothing.
func (r *Registry) LoadPlugin(name string, cfg PluginConfig) error {
	return r.loadPlugin(name, cfg, "")
}

// LoadPluginManifest loads every plugin of a YAML file `plugins: {name: config}`; local
// paths are relative to the file's folder.
func (r *Registry) LoadPluginManifest(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("plugin manifest: %w", err)
	}
	var doc struct {
		Plugins map[string]PluginConfig `yaml:"plugins"`
	}
	if err := decodeStrict(b, &doc); err != nil {
		return fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	if len(doc.Plugins) == 0 {
		return fmt.Errorf("plugin manifest %s: no plugins listed under \"plugins:\"", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("plugin manifest %s: %w", path, err)
	}
	names := make([]string, 0, len(doc.Plugins))
	for n := range doc.Plugins {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.loadPlugin(n, doc.Plugins[n], filepath.Dir(abs)); err != nil {
			return fmt.Errorf("plugin manifest %s: %w", path, err)
		}
	}
	return nil
}

func (r *Registry) loadPlugin(name string, cfg PluginConfig, baseDir string) error {
	if !pluginNameRE.MatchString(name) {
		return fmt.Errorf("plugin %q: the name must be letters, digits, '_', '.', '-'", name)
	}
	r.mu.RLock()
	old, loaded := r.plugins[name]
	r.mu.RUnlock()
	var (
		dir    string
		lp     = LoadedPlugin{Name: name, Tag: cfg.Tag}
		commit string
		err    error
	)
	switch {
	case cfg.Path != "" && (cfg.Repo != "" || cfg.Tag != "" || cfg.Commit != ""):
		return fmt.Errorf("plugin %q: give either path (local folder) or repo+tag (git), not both", name)
	case cfg.Path != "":
		dir = cfg.Path
		if !filepath.IsAbs(dir) {
			if baseDir == "" {
				baseDir, _ = os.Getwd()
			}
			dir = filepath.Join(baseDir, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("plugin %q: local folder %s does not exist or is not a folder", name, dir)
		}
		lp.Source = dir
	case cfg.Repo != "":
		if cfg.Tag == "" {
			return fmt.Errorf("plugin %q: repo %s needs a tag (branches are not allowed: plugins are pinned)", name, cfg.Repo)
		}
		if cfg.Commit != "" && !regexp.MustCompile(`^[0-9a-fA-F]{7,40}$`).MatchString(cfg.Commit) {
			return fmt.Errorf("plugin %q: commit %q is not a hex commit id", name, cfg.Commit)
		}
		if loaded && reflect.DeepEqual(old.config, cfg) {
			return nil
		}
		dir, commit, err = fetchGitPlugin(name, cfg)
		if err != nil {
			return err
		}
		lp.Source, lp.Commit = cfg.Repo, commit
	default:
		return fmt.Errorf("plugin %q: config needs path (local folder) or repo and tag (git)", name)
	}
	if loaded {
		if reflect.DeepEqual(old.config, cfg) && old.Dir == dir {
			return nil
		}
		return fmt.Errorf("plugin %q is already loaded from %s with a different config; unload it first", name, old.Source)
	}
	man, err := readPluginManifest(dir)
	if err != nil {
		return fmt.Errorf("plugin %q: %w", name, err)
	}
	provide, err := selectProvided(man, cfg.Provides)
	if err != nil {
		return fmt.Errorf("plugin %q (%s): %w", name, dir, err)
	}
	for _, nm := range provide {
		if _, err := resolvePluginFiles(dir, nm); err != nil {
			return fmt.Errorf("plugin %q: node %q: %w", name, nm.Name, err)
		}
		if _, ok := lookupKind(nm.Kind); !ok {
			return fmt.Errorf("plugin %q: node %q: unknown kind %q (known: %s)", name, nm.Name, nm.Kind, strings.Join(PluginKinds(), ", "))
		}
		if _, err := nm.portSpecs(); err != nil {
			return fmt.Errorf("plugin %q: node %q: %w", name, nm.Name, err)
		}
	}
	var added []string
	for _, nm := range provide {
		info := TypeInfo{Name: nm.Name, Doc: nm.Doc, Plugin: name, Factory: pluginFactory(name, dir, nm)}
		if err := r.Add(info); err != nil {
			r.removeTypes(added)
			return fmt.Errorf("plugin %q: %w", name, err)
		}
		added = append(added, nm.Name)
	}
	lp.Dir = dir
	lp.Provides = added
	lp.config = cfg
	r.mu.Lock()
	r.plugins[name] = &lp
	r.mu.Unlock()
	return nil
}

func (r *Registry) removeTypes(names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		delete(r.types, n)
	}
}

// Plugins lists the loaded plugins by name.
func (r *Registry) Plugins() []LoadedPlugin {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]LoadedPlugin, 0, len(r.plugins))
	for _, p := range r.plugins {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// UnloadPlugin removes a plugin and the node types it registered.
func (r *Registry) UnloadPlugin(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.plugins[name]; !ok {
		var known []string
		for k := range r.plugins {
			known = append(known, k)
		}
		sort.Strings(known)
		return fmt.Errorf("plugin %q is not loaded (loaded: %s)", name, strings.Join(known, ", "))
	}
	for k, t := range r.types {
		if t.Plugin == name {
			delete(r.types, k)
		}
	}
	delete(r.plugins, name)
	return nil
}

// ClearPluginCache removes the cached checkouts of one plugin (every tag) or, for "",
// the whole cache.
func (r *Registry) ClearPluginCache(name string) error {
	dir := PluginCacheDir()
	if name == "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("clear plugin cache %s: %w", dir, err)
		}
		return nil
	}
	if !pluginNameRE.MatchString(name) {
		return fmt.Errorf("clear plugin cache: bad plugin name %q", name)
	}
	matches, err := filepath.Glob(filepath.Join(dir, name+"@*"))
	if err != nil {
		return fmt.Errorf("clear plugin cache: %w", err)
	}
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			return fmt.Errorf("clear plugin cache %s: %w", m, err)
		}
	}
	return nil
}

// ---- git ----

func gitEnv() []string {
	return append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_LFS_SKIP_SMUDGE=1", "GIT_ASKPASS=", "SSH_ASKPASS=")
}

// git runs one git command with hooks disabled and a timeout.
func git(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), GitTimeout)
	defer cancel()
	full := append([]string{"-c", "core.hooksPath=/dev/null", "-c", "advice.detachedHead=false", "-c", "protocol.ext.allow=never"}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	cmd.Stdin = nil
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return "", fmt.Errorf("git %s: timed out after %s", strings.Join(args, " "), GitTimeout)
	}
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("git %s: %s", args[0], msg)
	}
	return strings.TrimSpace(out.String()), nil
}

// remoteTagCommit asks the remote which commit a tag points at (peeled for annotated
// tags). found is false when the remote answered but has no such tag.
func remoteTagCommit(repo, tag string) (commit string, found bool, err error) {
	out, err := git("", "ls-remote", "--tags", "--", repo, "refs/tags/"+tag, "refs/tags/"+tag+"^{}")
	if err != nil {
		return "", false, err
	}
	var plain, peeled string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		switch f[1] {
		case "refs/tags/" + tag:
			plain = f[0]
		case "refs/tags/" + tag + "^{}":
			peeled = f[0]
		}
	}
	if peeled != "" {
		return peeled, true, nil
	}
	return plain, plain != "", nil
}

func commitMatches(pin, commit string) bool {
	return pin == "" || strings.HasPrefix(commit, strings.ToLower(pin))
}

// fetchGitPlugin returns a verified checkout of repo at tag in the cache, cloning it when
// absent. A cached checkout is reused without cloning; when the remote is reachable its
// tag must still point at the cached commit.
func fetchGitPlugin(name string, cfg PluginConfig) (string, string, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return "", "", fmt.Errorf("plugin %q: git is not installed: %w", name, err)
	}
	if strings.HasPrefix(cfg.Tag, "-") || strings.ContainsAny(cfg.Tag, " \t\n~^:?*[\\") {
		return "", "", fmt.Errorf("plugin %q: bad tag %q", name, cfg.Tag)
	}
	base := PluginCacheDir()
	dir := filepath.Join(base, name+"@"+strings.ReplaceAll(cfg.Tag, "/", "_"))
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		head, err := checkoutCommit(dir, cfg.Tag)
		if err != nil {
			return "", "", fmt.Errorf("plugin %q: cached checkout %s is not usable (%v); remove it with ClearPluginCache(%q) or `spectraclip plugins clear-cache %s`", name, dir, err, name, name)
		}
		if origin, err := git(dir, "config", "--get", "remote.origin.url"); err != nil || origin != cfg.Repo {
			return "", "", fmt.Errorf("plugin %q: cached checkout %s was cloned from %q, not %s; clear the cache for %q", name, dir, origin, cfg.Repo, name)
		}
		if !commitMatches(cfg.Commit, head) {
			return "", "", fmt.Errorf("plugin %q: cached checkout %s of tag %s is commit %s, but the config pins commit %s; clear the cache for %q if the pin is right", name, dir, cfg.Tag, head, cfg.Commit, name)
		}
		if cfg.Commit == "" {
			remote, found, err := remoteTagCommit(cfg.Repo, cfg.Tag)
			switch {
			case err != nil:
				// Offline: the cached checkout was verified against its own tag; use it.
			case !found:
				return "", "", fmt.Errorf("plugin %q: tag %s no longer exists in %s (cached checkout %s is commit %s); pin a commit or clear the cache for %q", name, cfg.Tag, cfg.Repo, dir, head, name)
			case remote != head:
				return "", "", fmt.Errorf("plugin %q: tag %s moved in %s: it now points at %s, the cached checkout %s is %s; refusing to follow a moved tag silently: clear the cache for %q (ClearPluginCache / `spectraclip plugins clear-cache %s`) to take the new commit, or pin commit: %s to keep the old one", name, cfg.Tag, cfg.Repo, remote, dir, head, name, name, head)
			}
		}
		return dir, head, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", "", fmt.Errorf("plugin %q: plugin cache %s: %w", name, base, err)
	}
	tmp, err := os.MkdirTemp(base, ".clone-"+name+"-")
	if err != nil {
		return "", "", fmt.Errorf("plugin %q: plugin cache %s: %w", name, base, err)
	}
	defer os.RemoveAll(tmp)
	if _, err := git("", "clone", "--depth", "1", "--branch", cfg.Tag, "--single-branch", "--no-recurse-submodules", "--", cfg.Repo, tmp); err != nil {
		_, found, lerr := remoteTagCommit(cfg.Repo, cfg.Tag)
		switch {
		case lerr != nil:
			return "", "", fmt.Errorf("plugin %q: repository %s is unreachable: %v", name, cfg.Repo, lerr)
		case !found:
			return "", "", fmt.Errorf("plugin %q: tag %s not found in %s", name, cfg.Tag, cfg.Repo)
		}
		return "", "", fmt.Errorf("plugin %q: cannot clone %s at tag %s: %v", name, cfg.Repo, cfg.Tag, err)
	}
	head, err := checkoutCommit(tmp, cfg.Tag)
	if err != nil {
		return "", "", fmt.Errorf("plugin %q: clone of %s: %v (is %s a tag? branches are not allowed)", name, cfg.Repo, err, cfg.Tag)
	}
	if !commitMatches(cfg.Commit, head) {
		return "", "", fmt.Errorf("plugin %q: tag %s of %s is commit %s, but the config pins commit %s", name, cfg.Tag, cfg.Repo, head, cfg.Commit)
	}
	// The verified clone goes into place synced: a crash never leaves a cached checkout
	// with files missing or empty.
	if err := atomicfile.PutDir(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, ".git")); serr == nil {
			return fetchGitPlugin(name, cfg) // another process cloned it meanwhile
		}
		return "", "", fmt.Errorf("plugin %q: plugin cache: %w", name, err)
	}
	return dir, head, nil
}

// checkoutCommit returns HEAD of dir after checking it is exactly the tag's commit.
func checkoutCommit(dir, tag string) (string, error) {
	head, err := git(dir, "rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return "", err
	}
	tagc, err := git(dir, "rev-parse", "--verify", "refs/tags/"+tag+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("tag %s is not in the checkout: %v", tag, err)
	}
	if head != tagc {
		return "", fmt.Errorf("checkout is at %s but tag %s is %s", head, tag, tagc)
	}
	return head, nil
}

// ---- manifest ----

func readPluginManifest(dir string) (*PluginManifest, error) {
	path, err := insideDir(dir, PluginManifestFile)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var m PluginManifest
	if err := decodeStrict(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("manifest %s: version %d is not supported (want 1)", path, m.Version)
	}
	if len(m.Nodes) == 0 {
		return nil, fmt.Errorf("manifest %s: declares no nodes", path)
	}
	seen := map[string]bool{}
	for i, n := range m.Nodes {
		if n.Name == "" || n.Kind == "" {
			return nil, fmt.Errorf("manifest %s: nodes[%d]: name and kind are required", path, i)
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("manifest %s: node %q declared twice", path, n.Name)
		}
		seen[n.Name] = true
		for j, f := range n.Files {
			if f.Path == "" || len(f.SHA256) != 64 {
				return nil, fmt.Errorf("manifest %s: node %q: files[%d]: path and a 64-hex-digit sha256 are required", path, n.Name, j)
			}
		}
		for k, ps := range n.Params {
			if len(ps.Allowed) > 0 && ps.Default != nil && !allowedValue(ps.Default, ps.Allowed) {
				return nil, fmt.Errorf("manifest %s: node %q: param %q: default %v is not among allowed %v", path, n.Name, k, ps.Default, ps.Allowed)
			}
		}
	}
	return &m, nil
}

func selectProvided(m *PluginManifest, provides []string) ([]PluginNodeManifest, error) {
	if len(provides) == 0 {
		return m.Nodes, nil
	}
	byName := map[string]PluginNodeManifest{}
	var declared []string
	for _, n := range m.Nodes {
		byName[n.Name] = n
		declared = append(declared, n.Name)
	}
	var out []PluginNodeManifest
	for _, p := range provides {
		n, ok := byName[p]
		if !ok {
			return nil, fmt.Errorf("provides %q, which the manifest does not declare (declared: %s)", p, strings.Join(declared, ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

// insideDir resolves rel inside dir, refusing absolute paths, ".." and symlinks that
// lead out of dir.
func insideDir(dir, rel string) (string, error) {
	if rel == "" || filepath.IsAbs(rel) || strings.HasPrefix(rel, "/") || filepath.VolumeName(rel) != "" {
		return "", fmt.Errorf("path %q must be relative to the plugin folder", rel)
	}
	clean := filepath.Clean(filepath.FromSlash(rel))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q leaves the plugin folder", rel)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("plugin folder: %w", err)
	}
	root, _ = filepath.Abs(root)
	real, err := filepath.EvalSymlinks(filepath.Join(root, clean))
	if err != nil {
		return "", fmt.Errorf("path %q: %w", rel, err)
	}
	real, _ = filepath.Abs(real)
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q resolves to %s, outside the plugin folder %s (symlink)", rel, real, root)
	}
	return real, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// resolvePluginFiles checks every file's location and sha256 and maps logical names to
// absolute paths.
func resolvePluginFiles(dir string, nm PluginNodeManifest) (map[string]string, error) {
	files := map[string]string{}
	for _, f := range nm.Files {
		abs, err := insideDir(dir, f.Path)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(abs)
		if err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("file %s is missing or not a regular file", f.Path)
		}
		sum, err := fileSHA256(abs)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Path, err)
		}
		if !strings.EqualFold(sum, f.SHA256) {
			return nil, fmt.Errorf("file %s: sha256 mismatch: manifest says %s, file has %s", f.Path, strings.ToLower(f.SHA256), sum)
		}
		key := f.Name
		if key == "" {
			key = f.Path
		}
		files[key] = abs
	}
	return files, nil
}

func (nm PluginNodeManifest) portSpecs() ([]PortSpec, error) {
	conv := func(ps []PluginPort, side string) ([]PortSpec, error) {
		var out []PortSpec
		for _, p := range ps {
			if p.Name == "" {
				return nil, fmt.Errorf("%s port without a name", side)
			}
			s := PortSpec{Name: p.Name, Optional: p.Optional, Variadic: p.Variadic, Doc: p.Doc}
			switch p.Kind {
			case "", "tensor":
				s.Kind = KindTensor
			case "value":
				s.Kind = KindValue
			default:
				return nil, fmt.Errorf("%s port %q: kind %q (want tensor or value)", side, p.Name, p.Kind)
			}
			if p.DType == "" || p.DType == "any" {
				s.AnyDType = true
			} else {
				dt, err := torch.ParseDType(p.DType)
				if err != nil {
					return nil, fmt.Errorf("%s port %q: %w", side, p.Name, err)
				}
				s.DType = dt
			}
			if p.Shape != nil {
				s.Shape = Shape(p.Shape...)
			}
			out = append(out, s)
		}
		return out, nil
	}
	ins, err := conv(nm.Ports.Inputs, "input")
	if err != nil {
		return nil, err
	}
	outs, err := conv(nm.Ports.Outputs, "output")
	if err != nil {
		return nil, err
	}
	return append(ins, outs...), nil
}

func allowedValue(v any, allowed []any) bool {
	for _, a := range allowed {
		fa, aok := toFloat(a)
		fv, vok := toFloat(v)
		if aok && vok && fa == fv {
			return true
		}
		if reflect.DeepEqual(a, v) {
			return true
		}
	}
	return false
}

// mergeParams lays the user's params over the manifest defaults, rejecting unknown keys
// and values outside allowed.
func (nm PluginNodeManifest) mergeParams(node string, params map[string]any) (map[string]any, error) {
	out := map[string]any{}
	for k, ps := range nm.Params {
		if ps.Default != nil {
			out[k] = ps.Default
		}
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := params[k]
		ps, ok := nm.Params[k]
		if !ok {
			var known []string
			for kk := range nm.Params {
				known = append(known, kk)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("node %q: unknown parameter %q for plugin node %s (allowed: %s)", node, k, nm.Name, strings.Join(known, ", "))
		}
		if len(ps.Allowed) > 0 && !allowedValue(v, ps.Allowed) {
			return nil, fmt.Errorf("node %q: parameter %q: %v is not allowed (allowed: %v)", node, k, v, ps.Allowed)
		}
		if ps.Default != nil && v != nil {
			_, dnum := toFloat(ps.Default)
			_, vnum := toFloat(v)
			if dnum != vnum || (!dnum && reflect.TypeOf(ps.Default) != reflect.TypeOf(v)) {
				if _, isList := toList(v); !(isList && reflect.TypeOf(ps.Default).Kind() == reflect.Slice) {
					return nil, fmt.Errorf("node %q: parameter %q: want a value like %v (%T), got %v (%T)", node, k, ps.Default, ps.Default, v, v)
				}
			}
		}
		out[k] = v
	}
	return out, nil
}

func pluginFactory(plugin, dir string, nm PluginNodeManifest) Factory {
	return func(name string, params map[string]any) (Node, error) {
		merged, err := nm.mergeParams(name, params)
		if err != nil {
			return nil, err
		}
		files, err := resolvePluginFiles(dir, nm)
		if err != nil {
			return nil, fmt.Errorf("node %q (plugin %s, type %s): %w", name, plugin, nm.Name, err)
		}
		build, ok := lookupKind(nm.Kind)
		if !ok {
			return nil, fmt.Errorf("node %q: plugin %s: unknown kind %q (known: %s)", name, plugin, nm.Kind, strings.Join(PluginKinds(), ", "))
		}
		kindParams := make(map[string]any, len(merged))
		for k, v := range merged {
			kindParams[k] = v
		}
		inner, err := build(name, files, kindParams)
		if err != nil {
			return nil, fmt.Errorf("node %q (plugin %s, type %s): %w", name, plugin, nm.Name, err)
		}
		declared, _ := nm.portSpecs()
		if err := checkDeclaredPorts(inner, declared, len(nm.Ports.Inputs)); err != nil {
			if c, ok := inner.(Closer); ok {
				c.Close()
			}
			return nil, fmt.Errorf("node %q (plugin %s, type %s): %w", name, plugin, nm.Name, err)
		}
		return &PluginNode{Node: inner, typeName: nm.Name, params: merged}, nil
	}
}

// checkDeclaredPorts makes sure the node built from a kind has every port the manifest
// promises, with a compatible spec.
func checkDeclaredPorts(n Node, declared []PortSpec, nIn int) error {
	for i, d := range declared {
		side, specs := "input", n.Inputs()
		if i >= nIn {
			side, specs = "output", n.Outputs()
		}
		got, ok := findPort(specs, d.Name)
		if !ok {
			return fmt.Errorf("manifest declares %s port %q but kind %s has %s", side, d.Name, n.Type(), portNames(specs))
		}
		if got.Kind != d.Kind {
			return fmt.Errorf("%s port %q: manifest says %s, node has %s", side, d.Name, kindName(d.Kind), kindName(got.Kind))
		}
		if d.Kind == KindTensor && !d.AnyDType && !got.AnyDType && got.DType != d.DType {
			return fmt.Errorf("%s port %q: manifest says dtype %s, node has %s", side, d.Name, d.DType, got.DType)
		}
		if d.Shape != nil && got.Shape != nil && len(d.Shape) != len(got.Shape) {
			return fmt.Errorf("%s port %q: manifest says shape %s, node has %s", side, d.Name, shapeString(d.Shape), shapeString(got.Shape))
		}
	}
	return nil
}

// PluginNode is a node built from a plugin: the kind's node, presented under the
// plugin's qualified type name with the plugin-level parameters, so that a saved
// pipeline is rebuilt through the plugin again. The optional interfaces are forwarded.
type PluginNode struct {
	Node
	typeName string
	params   map[string]any
}

// Unwrap returns the node of the built-in kind.
func (p *PluginNode) Unwrap() Node { return p.Node }

// Type returns the plugin's qualified node name.
func (p *PluginNode) Type() string { return p.typeName }

// Params returns the merged plugin parameters.
func (p *PluginNode) Params() map[string]any {
	out := make(map[string]any, len(p.params))
	for k, v := range p.params {
		out[k] = v
	}
	return out
}

// UnwrapNode returns the node inside a PluginNode, or n itself.
func UnwrapNode(n Node) Node {
	if p, ok := n.(*PluginNode); ok {
		return p.Node
	}
	return n
}

// ResolveDim forwards to the inner node.
func (p *PluginNode) ResolveDim(name string) (int64, bool) {
	if r, ok := p.Node.(DimResolver); ok {
		return r.ResolveDim(name)
	}
	return 0, false
}

// SetTraining forwards to the inner node.
func (p *PluginNode) SetTraining(on bool) {
	if m, ok := p.Node.(Moder); ok {
		m.SetTraining(on)
	}
}

// To forwards to the inner node.
func (p *PluginNode) To(dev torch.Device) error {
	if m, ok := p.Node.(Mover); ok {
		return m.To(dev)
	}
	return nil
}

// Close forwards to the inner node.
func (p *PluginNode) Close() {
	if c, ok := p.Node.(Closer); ok {
		c.Close()
	}
}

// State forwards to the inner node (nil when it has no state).
func (p *PluginNode) State() []NamedTensor {
	if s, ok := p.Node.(Stateful); ok {
		return s.State()
	}
	return nil
}

// LoadState forwards to the inner node; a node without state accepts only an empty map.
func (p *PluginNode) LoadState(state map[string]*torch.Tensor) error {
	if s, ok := p.Node.(Stateful); ok {
		return s.LoadState(state)
	}
	if len(state) > 0 {
		return fmt.Errorf("node %q has no state to load", p.Name())
	}
	return nil
}

// RequiresFit forwards to the inner node.
func (p *PluginNode) RequiresFit() bool {
	f, ok := p.Node.(Fitter)
	return ok && f.RequiresFit()
}

// FitReset forwards to the inner node.
func (p *PluginNode) FitReset() error {
	if f, ok := p.Node.(Fitter); ok {
		return f.FitReset()
	}
	return nil
}

// FitBatch forwards to the inner node.
func (p *PluginNode) FitBatch(ctx *Context, in map[string]any) error {
	if f, ok := p.Node.(Fitter); ok {
		return f.FitBatch(ctx, in)
	}
	return nil
}

// FitFinish forwards to the inner node.
func (p *PluginNode) FitFinish() error {
	if f, ok := p.Node.(Fitter); ok {
		return f.FitFinish()
	}
	return nil
}

// Fitted forwards to the inner node (true when it needs no fit).
func (p *PluginNode) Fitted() bool {
	if f, ok := p.Node.(Fitter); ok {
		return f.Fitted()
	}
	return true
}

// Parameters forwards to the inner node.
func (p *PluginNode) Parameters() []NamedTensor {
	if t, ok := p.Node.(Trainable); ok {
		return t.Parameters()
	}
	return nil
}

// Freeze forwards to the inner node; freezing a node without parameters is a no-op and
// unfreezing it an error.
func (p *PluginNode) Freeze(frozen bool) error {
	if t, ok := p.Node.(Trainable); ok {
		return t.Freeze(frozen)
	}
	if !frozen {
		return fmt.Errorf("node %q (%s) has no trainable parameters", p.Name(), p.typeName)
	}
	return nil
}

// Frozen forwards to the inner node (true when it has no parameters).
func (p *PluginNode) Frozen() bool {
	if t, ok := p.Node.(Trainable); ok {
		return t.Frozen()
	}
	return true
}

var _ interface {
	Node
	Fitter
	Trainable
	Stateful
	Moder
	Mover
	Closer
	DimResolver
} = (*PluginNode)(nil)

// marshalManifest is used by tools that write manifests (export-detector).
func marshalManifest(m PluginManifest) ([]byte, error) { return yaml.Marshal(m) }

// WritePluginManifest writes a plugin manifest into dir atomically.
func WritePluginManifest(dir string, m PluginManifest) error {
	b, err := marshalManifest(m)
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, PluginManifestFile), b)
}

// FileSHA256 returns the hex sha256 of a file, as a plugin manifest records it.
func FileSHA256(path string) (string, error) { return fileSHA256(path) }
