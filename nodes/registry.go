package nodes

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// Factory builds a node of one type from its name and parameters. It must reject unknown
// parameters and wrong types with an error naming the node and the key (ParamReader).
type Factory func(name string, params map[string]any) (Node, error)

// TypeInfo describes a registered node type.
type TypeInfo struct {
	Name    string   // the Go name, e.g. "MinMaxNormalizer"
	Aliases []string // e.g. the reference's qualified class name
	Factory Factory
	Doc     string
	Plugin  string // the plugin that provided it ("" for built-ins)
}

// Registry maps type names (and aliases) to factories.
type Registry struct {
	mu      sync.RWMutex
	types   map[string]*TypeInfo
	plugins map[string]*LoadedPlugin
}

// LoadedPlugin records a plugin loaded into a registry.
type LoadedPlugin struct {
	Name     string
	Source   string // repo URL or local path
	Tag      string
	Commit   string
	Dir      string // the checkout or folder the files were read from
	Provides []string

	config PluginConfig // what it was loaded with, to make a repeated load a no-op
}

// Builtins holds every built-in node type; node packages register into it from init.
var Builtins = &Registry{types: map[string]*TypeInfo{}, plugins: map[string]*LoadedPlugin{}}

// NewRegistry returns a registry holding the built-ins, to which plugins can be added
// without affecting other registries.
func NewRegistry() *Registry {
	r := &Registry{types: map[string]*TypeInfo{}, plugins: map[string]*LoadedPlugin{}}
	Builtins.mu.RLock()
	defer Builtins.mu.RUnlock()
	for k, v := range Builtins.types {
		r.types[k] = v
	}
	return r
}

// Register adds a built-in type. It panics on a duplicate name: that is a programming
// error found at start-up.
func Register(info TypeInfo) {
	if err := Builtins.Add(info); err != nil {
		panic(err)
	}
}

// Add registers a type under its name and aliases.
func (r *Registry) Add(info TypeInfo) error {
	if info.Name == "" || info.Factory == nil {
		return fmt.Errorf("registry: type needs a name and a factory")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := append([]string{info.Name}, info.Aliases...)
	for _, k := range keys {
		if old, ok := r.types[k]; ok {
			return fmt.Errorf("registry: node type %q already registered (by %s)", k, describeOrigin(old))
		}
	}
	ti := info
	for _, k := range keys {
		r.types[k] = &ti
	}
	return nil
}

func describeOrigin(t *TypeInfo) string {
	if t.Plugin != "" {
		return "plugin " + t.Plugin
	}
	return "built-in " + t.Name
}

// Lookup finds a type by name or alias.
func (r *Registry) Lookup(name string) (*TypeInfo, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.types[name]
	return t, ok
}

// New builds a node of the given type.
func (r *Registry) New(typeName, nodeName string, params map[string]any) (Node, error) {
	t, ok := r.Lookup(typeName)
	if !ok {
		return nil, fmt.Errorf("node %q: unknown node type %q (known: %s)", nodeName, typeName, strings.Join(r.Names(), ", "))
	}
	if nodeName == "" {
		nodeName = t.Name
	}
	n, err := t.Factory(nodeName, params)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// Names lists the primary names of the registered types, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	for _, t := range r.types {
		if !seen[t.Name] {
			seen[t.Name] = true
			out = append(out, t.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Types returns every registered type once, sorted by name.
func (r *Registry) Types() []TypeInfo {
	r.mu.RLock()
	defer r.mu.RUnlock()
	seen := map[string]bool{}
	var out []TypeInfo
	for _, t := range r.types {
		if !seen[t.Name] {
			seen[t.Name] = true
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
