package nodes

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spectraclip/spectraclip/torch"
)

// Edge is one connection from an output port to an input port.
type Edge struct {
	FromNode, FromPort string
	ToNode, ToPort     string
}

// String writes the edge as "a.port -> b.port".
func (e Edge) String() string {
	return e.FromNode + "." + e.FromPort + " -> " + e.ToNode + "." + e.ToPort
}

// Pipeline is a directed acyclic graph of nodes joined port to port. Compatibility of the
// two ends of a connection is checked when it is made, so that a wrong wiring is reported
// at build time with both port names instead of deep inside a training step.
type Pipeline struct {
	name      string
	reg       *Registry
	nodes     map[string]Node
	order     []string // insertion order, the tie-break of the topological order
	edges     []Edge
	batchKeys []string
	// Metadata is free-form information written to and read from the saved YAML
	// (description, tags, author, the run that produced it).
	Metadata map[string]any
}

// NewPipeline returns an empty pipeline. reg is the registry Load/FromConfig rebuild nodes
// through; nil means Builtins.
func NewPipeline(name string, reg *Registry) *Pipeline {
	if reg == nil {
		reg = Builtins
	}
	return &Pipeline{name: name, reg: reg, nodes: map[string]Node{}, Metadata: map[string]any{}}
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.name }

// Registry returns the registry the pipeline was built with.
func (p *Pipeline) Registry() *Registry { return p.reg }

// Add inserts a node. A name already taken gets a "-N" suffix, N one above the largest
// suffix in use for that base name (as the reference does); the final name is returned
// and set on the node.
func (p *Pipeline) Add(n Node) (string, error) {
	if n == nil {
		return "", fmt.Errorf("pipeline %q: add: nil node", p.name)
	}
	name := n.Name()
	if name == "" {
		name = n.Type()
	}
	if err := checkNodeName(name); err != nil {
		return "", fmt.Errorf("pipeline %q: %w", p.name, err)
	}
	for _, existing := range p.nodes {
		if existing == n {
			return "", fmt.Errorf("pipeline %q: node %q is already in the pipeline", p.name, n.Name())
		}
	}
	if _, taken := p.nodes[name]; taken {
		maxN := 0
		for other := range p.nodes {
			if rest, ok := strings.CutPrefix(other, name+"-"); ok {
				if k, err := strconv.Atoi(rest); err == nil && k > maxN {
					maxN = k
				}
			}
		}
		name = name + "-" + strconv.Itoa(maxN+1)
	}
	n.SetName(name)
	p.nodes[name] = n
	p.order = append(p.order, name)
	return name, nil
}

// AddStrict inserts a node under its own name and fails if the name is taken.
func (p *Pipeline) AddStrict(n Node) error {
	if n == nil {
		return fmt.Errorf("pipeline %q: add: nil node", p.name)
	}
	if _, taken := p.nodes[n.Name()]; taken {
		return fmt.Errorf("pipeline %q: a node named %q already exists", p.name, n.Name())
	}
	if n.Name() == "" {
		return fmt.Errorf("pipeline %q: node of type %q has no name", p.name, n.Type())
	}
	_, err := p.Add(n)
	return err
}

func checkNodeName(name string) error {
	if name == "" {
		return fmt.Errorf("node name is empty")
	}
	if strings.ContainsAny(name, "\n\"\\") {
		return fmt.Errorf("node name %q must not contain quotes, backslashes or newlines", name)
	}
	return nil
}

// Node returns the node of that name.
func (p *Pipeline) Node(name string) (Node, bool) {
	n, ok := p.nodes[name]
	return n, ok
}

// NodeNames returns the node names in topological order.
func (p *Pipeline) NodeNames() []string { return p.topo() }

// Nodes returns the nodes in topological order (insertion order between independent ones).
func (p *Pipeline) Nodes() []Node {
	names := p.topo()
	out := make([]Node, len(names))
	for i, n := range names {
		out[i] = p.nodes[n]
	}
	return out
}

// Edges returns a copy of the connections in the order they were made.
func (p *Pipeline) Edges() []Edge { return append([]Edge(nil), p.edges...) }

// SetBatchKeys declares the keys the data loader puts in each batch; Validate accepts a
// required input fed by one of them.
func (p *Pipeline) SetBatchKeys(keys []string) { p.batchKeys = append([]string(nil), keys...) }

// BatchKeys returns the declared batch keys.
func (p *Pipeline) BatchKeys() []string { return append([]string(nil), p.batchKeys...) }

func (p *Pipeline) knownNodes() string {
	names := append([]string(nil), p.order...)
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// topo is Kahn's algorithm with insertion order as the tie-break, so the order is stable.
func (p *Pipeline) topo() []string {
	indeg := map[string]int{}
	succ := map[string][]string{}
	for _, e := range p.edges {
		indeg[e.ToNode]++
		succ[e.FromNode] = append(succ[e.FromNode], e.ToNode)
	}
	pos := map[string]int{}
	for i, n := range p.order {
		pos[n] = i
	}
	var ready []string
	for _, n := range p.order {
		if indeg[n] == 0 {
			ready = append(ready, n)
		}
	}
	out := make([]string, 0, len(p.order))
	for len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool { return pos[ready[i]] < pos[ready[j]] })
		n := ready[0]
		ready = ready[1:]
		out = append(out, n)
		for _, m := range succ[n] {
			indeg[m]--
			if indeg[m] == 0 {
				ready = append(ready, m)
			}
		}
	}
	return out
}

// parsePortRef reads "node.port", "node.outputs.port" or "node.inputs.port".
func (p *Pipeline) parsePortRef(ref, section string) (string, string, error) {
	i := strings.LastIndexByte(ref, '.')
	if i <= 0 || i == len(ref)-1 {
		return "", "", fmt.Errorf("bad port reference %q (want node.port)", ref)
	}
	node, port := ref[:i], ref[i+1:]
	if _, ok := p.nodes[node]; !ok {
		for _, sec := range []string{".outputs", ".inputs"} {
			if base, ok := strings.CutSuffix(node, sec); ok {
				if sec != "."+section {
					return "", "", fmt.Errorf("port reference %q: %s is not the %s side", ref, sec[1:], section)
				}
				node = base
				break
			}
		}
	}
	if _, ok := p.nodes[node]; !ok {
		return "", "", fmt.Errorf("port reference %q: no node %q in pipeline %q (nodes: %s)", ref, node, p.name, p.knownNodes())
	}
	return node, port, nil
}

func findPort(specs []PortSpec, name string) (PortSpec, bool) {
	for _, s := range specs {
		if s.Name == name {
			return s, true
		}
	}
	return PortSpec{}, false
}

func portNames(specs []PortSpec) string {
	if len(specs) == 0 {
		return "none"
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// Connect joins an output port to an input port ("node.port" each; the reference's
// "node.outputs.port" and "node.inputs.port" are accepted too).
func (p *Pipeline) Connect(from, to string) error {
	fn, fp, err := p.parsePortRef(from, "outputs")
	if err != nil {
		return fmt.Errorf("connect %s -> %s: %w", from, to, err)
	}
	tn, tp, err := p.parsePortRef(to, "inputs")
	if err != nil {
		return fmt.Errorf("connect %s -> %s: %w", from, to, err)
	}
	label := fmt.Sprintf("connect %s.%s -> %s.%s", fn, fp, tn, tp)
	src, dst := p.nodes[fn], p.nodes[tn]
	out, ok := findPort(src.Outputs(), fp)
	if !ok {
		return fmt.Errorf("%s: node %q has no output port %q (outputs: %s)", label, fn, fp, portNames(src.Outputs()))
	}
	in, ok := findPort(dst.Inputs(), tp)
	if !ok {
		return fmt.Errorf("%s: node %q has no input port %q (inputs: %s)", label, tn, tp, portNames(dst.Inputs()))
	}
	if err := compatible(src, out, dst, in); err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	for _, e := range p.edges {
		if e.ToNode == tn && e.ToPort == tp {
			if e.FromNode == fn && e.FromPort == fp {
				return fmt.Errorf("%s: already connected", label)
			}
			if !in.Variadic {
				return fmt.Errorf("%s: input %s.%s is already fed by %s.%s and is not variadic", label, tn, tp, e.FromNode, e.FromPort)
			}
		}
	}
	if fn == tn || p.reaches(tn, fn) {
		return fmt.Errorf("%s: would create a cycle (%s already depends on %s)", label, fn, tn)
	}
	p.edges = append(p.edges, Edge{fn, fp, tn, tp})
	return nil
}

// reaches reports whether b is reachable from a along edges.
func (p *Pipeline) reaches(a, b string) bool {
	seen := map[string]bool{a: true}
	stack := []string{a}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if n == b {
			return true
		}
		for _, e := range p.edges {
			if e.FromNode == n && !seen[e.ToNode] {
				seen[e.ToNode] = true
				stack = append(stack, e.ToNode)
			}
		}
	}
	return false
}

func kindName(k PortKind) string {
	if k == KindValue {
		return "value"
	}
	return "tensor"
}

// resolveDim returns the size a dim stands for on node n, or false for a wildcard.
func resolveDim(n Node, d Dim) (int64, bool) {
	if d.Wildcard() {
		return 0, false
	}
	if v, ok := d.Fixed(); ok {
		return v, true
	}
	if _, err := strconv.ParseInt(string(d), 10, 64); err == nil {
		return 0, false // other negative numbers act as wildcards
	}
	if r, ok := n.(DimResolver); ok {
		return r.ResolveDim(string(d))
	}
	return 0, false
}

func shapeString(s []Dim) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = string(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// compatible applies the reference's rules: same kind; dtypes equal unless either side
// accepts any; same rank; fixed (or resolved symbolic) dims equal; wildcards match. A nil
// Shape declares no shape constraint at all.
func compatible(src Node, out PortSpec, dst Node, in PortSpec) error {
	if out.Kind != in.Kind {
		return fmt.Errorf("kind %s vs %s", kindName(out.Kind), kindName(in.Kind))
	}
	if out.Kind == KindValue {
		return nil
	}
	if !out.AnyDType && !in.AnyDType && out.DType != in.DType {
		return fmt.Errorf("dtype %s vs %s", out.DType, in.DType)
	}
	if out.Shape == nil || in.Shape == nil {
		return nil
	}
	if len(out.Shape) != len(in.Shape) {
		return fmt.Errorf("rank %d %s vs %d %s", len(out.Shape), shapeString(out.Shape), len(in.Shape), shapeString(in.Shape))
	}
	for i := range out.Shape {
		a, aok := resolveDim(src, out.Shape[i])
		b, bok := resolveDim(dst, in.Shape[i])
		if aok && bok && a != b {
			return fmt.Errorf("dim %d: %s=%d vs %s=%d (shapes %s vs %s)", i, out.Shape[i], a, in.Shape[i], b, shapeString(out.Shape), shapeString(in.Shape))
		}
	}
	return nil
}

// Outputs holds the values a run produced: node → port → value.
type Outputs map[string]map[string]any

// Get returns one output value.
func (o Outputs) Get(node, port string) (any, bool) {
	m, ok := o[node]
	if !ok {
		return nil, false
	}
	v, ok := m[port]
	return v, ok
}

// Tensor returns one output that must be a tensor.
func (o Outputs) Tensor(node, port string) (*torch.Tensor, error) {
	m, ok := o[node]
	if !ok {
		return nil, fmt.Errorf("output %s.%s: node %q did not run", node, port, node)
	}
	v, ok := m[port]
	if !ok {
		return nil, fmt.Errorf("output %s.%s: node %q produced no port %q", node, port, node, port)
	}
	t, ok := v.(*torch.Tensor)
	if !ok || t == nil {
		return nil, fmt.Errorf("output %s.%s: want a tensor, got %T", node, port, v)
	}
	return t, nil
}

// affineValue stands for the output of an AffineSource that its only consumer absorbs.
type affineValue struct {
	x            *torch.Tensor
	scale, shift float64
}

// affineFusable reports whether node name's output can be folded into its consumer: the node
// is an AffineSource, it has exactly one outgoing connection, into the "data" port of an
// AffineSink that runs in this stage (and in this run). It returns the output port.
func (p *Pipeline) affineFusable(ctx *Context, name string, include map[string]bool) (string, bool) {
	if _, ok := UnwrapNode(p.nodes[name]).(AffineSource); !ok {
		return "", false
	}
	var out []Edge
	for _, e := range p.edges {
		if e.FromNode == name {
			out = append(out, e)
		}
	}
	if len(out) != 1 || out[0].ToPort != "data" {
		return "", false
	}
	dst := p.nodes[out[0].ToNode]
	if _, ok := UnwrapNode(dst).(AffineSink); !ok || !RunsIn(dst, ctx.Stage) || (include != nil && !include[out[0].ToNode]) {
		return "", false
	}
	return out[0].FromPort, true
}

// RunOptions restrict a run.
type RunOptions struct {
	// NoFusion runs every node on its own even where an affine normaliser could be folded
	// into the reducer that consumes it (see AffineSink).
	NoFusion bool
	// UpTo runs only the ancestors of this node (not the node itself); FitInputs returns
	// what it would have received.
	UpTo string
	// Only runs only these nodes and their ancestors.
	Only []string
}

// ancestors returns the set of nodes b depends on (not including b).
func (p *Pipeline) ancestors(targets ...string) map[string]bool {
	set := map[string]bool{}
	stack := append([]string(nil), targets...)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, e := range p.edges {
			if e.ToNode == n && !set[e.FromNode] {
				set[e.FromNode] = true
				stack = append(stack, e.FromNode)
			}
		}
	}
	return set
}

// Run executes the pipeline for one batch in topological order. Nodes that do not run in
// ctx.Stage are skipped, and so is any node whose required input only a skipped node
// could have given. Every input and output is checked against its port spec.
func (p *Pipeline) Run(ctx *Context, batch map[string]any, opts RunOptions) (Outputs, error) {
	outs, _, err := p.run(ctx, batch, opts, false)
	return outs, err
}

// FitInputs runs the ancestors of node and returns the inputs the node would receive:
// what a statistical fit (Fitter.FitBatch) needs. The node's own stages are not consulted.
func (p *Pipeline) FitInputs(ctx *Context, batch map[string]any, node string) (map[string]any, error) {
	_, in, err := p.run(ctx, batch, RunOptions{UpTo: node}, true)
	return in, err
}

func (p *Pipeline) run(ctx *Context, batch map[string]any, opts RunOptions, wantInputs bool) (Outputs, map[string]any, error) {
	if ctx == nil {
		return nil, nil, fmt.Errorf("pipeline %q: run: nil context", p.name)
	}
	var include map[string]bool
	if opts.UpTo != "" {
		if _, ok := p.nodes[opts.UpTo]; !ok {
			return nil, nil, fmt.Errorf("pipeline %q: run up to %q: no such node (nodes: %s)", p.name, opts.UpTo, p.knownNodes())
		}
		include = p.ancestors(opts.UpTo)
	}
	if len(opts.Only) > 0 {
		for _, n := range opts.Only {
			if _, ok := p.nodes[n]; !ok {
				return nil, nil, fmt.Errorf("pipeline %q: run only %q: no such node (nodes: %s)", p.name, n, p.knownNodes())
			}
		}
		only := p.ancestors(opts.Only...)
		for _, n := range opts.Only {
			only[n] = true
		}
		if include == nil {
			include = only
		} else {
			for n := range include {
				if !only[n] {
					delete(include, n)
				}
			}
		}
	}
	outs := Outputs{}
	for _, name := range p.topo() {
		if include != nil && !include[name] {
			continue
		}
		n := p.nodes[name]
		if !RunsIn(n, ctx.Stage) {
			continue
		}
		in, skip, err := p.gather(name, batch, outs)
		if err != nil {
			return nil, nil, err
		}
		if skip {
			continue
		}
		var av *affineValue
		if v, ok := in["data"].(*affineValue); ok {
			av = v
			in["data"] = v.x
		}
		if err := validatePorts(n, n.Inputs(), in, "input"); err != nil {
			return nil, nil, err
		}
		if !wantInputs && !opts.NoFusion && av == nil {
			if port, ok := p.affineFusable(ctx, name, include); ok {
				if a, b, ok := UnwrapNode(n).(AffineSource).InputAffine(); ok {
					outs[name] = map[string]any{port: &affineValue{x: in["data"].(*torch.Tensor), scale: a, shift: b}}
					continue
				}
			}
		}
		var res map[string]any
		if av != nil {
			res, err = UnwrapNode(n).(AffineSink).ForwardAffine(ctx, in, av.scale, av.shift)
		} else {
			res, err = n.Forward(ctx, in)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("node %q (%s): %w", name, n.Type(), err)
		}
		if ctx.Scope != nil && ctx.Scope.Err() != nil {
			return nil, nil, fmt.Errorf("node %q (%s): %w", name, n.Type(), ctx.Scope.Err())
		}
		for k := range res {
			if _, ok := findPort(n.Outputs(), k); !ok {
				return nil, nil, fmt.Errorf("node %q (%s): returned undeclared output %q (outputs: %s)", name, n.Type(), k, portNames(n.Outputs()))
			}
		}
		if err := validatePorts(n, n.Outputs(), res, "output"); err != nil {
			return nil, nil, err
		}
		if res == nil {
			res = map[string]any{}
		}
		outs[name] = res
	}
	for name, ports := range outs {
		for k, v := range ports {
			if _, ok := v.(*affineValue); ok {
				delete(outs[name], k) // absorbed by its consumer: there is no tensor to show
			}
		}
	}
	if !wantInputs {
		return outs, nil, nil
	}
	in, skip, err := p.gather(opts.UpTo, batch, outs)
	if err != nil {
		return nil, nil, err
	}
	if skip {
		return nil, nil, fmt.Errorf("node %q: cannot gather its inputs in stage %s: a required input comes only from a node that does not run in that stage", opts.UpTo, ctx.Stage)
	}
	if err := validatePorts(p.nodes[opts.UpTo], p.nodes[opts.UpTo].Inputs(), in, "input"); err != nil {
		return nil, nil, err
	}
	return outs, in, nil
}

// gather collects a node's inputs: batch keys named like its ports first, then the outputs
// of its predecessors. skip is true when a required input is missing only because its
// source did not run.
func (p *Pipeline) gather(name string, batch map[string]any, outs Outputs) (map[string]any, bool, error) {
	n := p.nodes[name]
	in := map[string]any{}
	for _, spec := range n.Inputs() {
		if v, ok := batch[spec.Name]; ok {
			if spec.Variadic {
				in[spec.Name] = []any{v}
			} else {
				in[spec.Name] = v
			}
		}
	}
	fed := map[string]bool{}    // ports with at least one incoming edge
	got := map[string][]any{}   // values that arrived through edges
	for _, e := range p.edges { // edges are in connection order: variadic lists keep it
		if e.ToNode != name {
			continue
		}
		fed[e.ToPort] = true
		if v, ok := outs.Get(e.FromNode, e.FromPort); ok {
			got[e.ToPort] = append(got[e.ToPort], v)
		}
	}
	for _, spec := range n.Inputs() {
		vals, ok := got[spec.Name]
		if ok {
			if spec.Variadic {
				in[spec.Name] = vals
			} else {
				in[spec.Name] = vals[0]
			}
			continue
		}
		if _, ok := in[spec.Name]; ok {
			continue
		}
		if spec.Optional {
			continue
		}
		if fed[spec.Name] {
			return nil, true, nil
		}
		if spec.Variadic {
			in[spec.Name] = []any{}
			continue
		}
		return nil, false, fmt.Errorf("node %q (%s): required input %q is missing (not connected and no batch key %q)", name, n.Type(), spec.Name, spec.Name)
	}
	return in, false, nil
}

// validatePorts checks tensor values against their specs: dtype, rank, fixed and
// resolved dims, and symbolic dims used consistently within one call.
func validatePorts(n Node, specs []PortSpec, vals map[string]any, side string) error {
	syms := map[Dim]int64{}
	symFrom := map[Dim]string{}
	for _, spec := range specs {
		v, ok := vals[spec.Name]
		if !ok || spec.Kind != KindTensor {
			continue
		}
		list := []any{v}
		if spec.Variadic && side == "input" {
			l, ok := v.([]any)
			if !ok {
				return fmt.Errorf("node %q: %s %q: variadic port wants a []any, got %T", n.Name(), side, spec.Name, v)
			}
			list = l
		}
		for _, item := range list {
			if err := checkTensor(n, spec, item, syms, symFrom); err != nil {
				return fmt.Errorf("node %q: %s %q: %w", n.Name(), side, spec.Name, err)
			}
		}
	}
	return nil
}

func checkTensor(n Node, spec PortSpec, v any, syms map[Dim]int64, symFrom map[Dim]string) error {
	t, ok := v.(*torch.Tensor)
	if !ok || !t.Valid() {
		return fmt.Errorf("want a tensor, got %T", v)
	}
	if !spec.AnyDType && t.DType() != spec.DType {
		return fmt.Errorf("expected dtype %s, got %s", spec.DType, t.DType())
	}
	if spec.Shape == nil {
		return nil
	}
	shape := t.Shape()
	if len(shape) != len(spec.Shape) {
		return fmt.Errorf("expected rank %d %s, got shape %v", len(spec.Shape), shapeString(spec.Shape), shape)
	}
	for i, d := range spec.Shape {
		if want, ok := resolveDim(n, d); ok {
			if shape[i] != want {
				return fmt.Errorf("dim %d (%s): expected %d, got %d (shape %v, spec %s)", i, d, want, shape[i], shape, shapeString(spec.Shape))
			}
			continue
		}
		if d.Wildcard() {
			continue
		}
		if _, err := strconv.ParseInt(string(d), 10, 64); err == nil {
			continue
		}
		if prev, seen := syms[d]; seen && prev != shape[i] {
			return fmt.Errorf("dim %d (%s): got %d but %s had %s=%d (shape %v)", i, d, shape[i], symFrom[d], d, prev, shape)
		}
		syms[d] = shape[i]
		symFrom[d] = spec.Name
	}
	return nil
}

// Validate reports the first structural problem: a required input neither connected nor
// fed by a declared batch key, an edge to a node or port that is not there, or a
// non-variadic input fed twice.
func (p *Pipeline) Validate() error {
	var problems []string
	count := map[string]int{}
	for _, e := range p.edges {
		src, ok1 := p.nodes[e.FromNode]
		dst, ok2 := p.nodes[e.ToNode]
		if !ok1 || !ok2 {
			problems = append(problems, fmt.Sprintf("connection %s names an unknown node (nodes: %s)", e, p.knownNodes()))
			continue
		}
		if _, ok := findPort(src.Outputs(), e.FromPort); !ok {
			problems = append(problems, fmt.Sprintf("connection %s: node %q has no output %q", e, e.FromNode, e.FromPort))
		}
		spec, ok := findPort(dst.Inputs(), e.ToPort)
		if !ok {
			problems = append(problems, fmt.Sprintf("connection %s: node %q has no input %q", e, e.ToNode, e.ToPort))
			continue
		}
		key := e.ToNode + "." + e.ToPort
		count[key]++
		if count[key] == 2 && !spec.Variadic {
			problems = append(problems, fmt.Sprintf("input %s is fed more than once and is not variadic", key))
		}
	}
	keys := map[string]bool{}
	for _, k := range p.batchKeys {
		keys[k] = true
	}
	for _, name := range p.order {
		n := p.nodes[name]
		for _, spec := range n.Inputs() {
			if spec.Optional || count[name+"."+spec.Name] > 0 || keys[spec.Name] {
				continue
			}
			problems = append(problems, fmt.Sprintf("node %q: required input %q is not connected and no batch key %q is declared", name, spec.Name, spec.Name))
		}
	}
	if len(p.topo()) != len(p.order) {
		problems = append(problems, "the graph has a cycle")
	}
	if len(problems) > 0 {
		return fmt.Errorf("pipeline %q: %s", p.name, strings.Join(problems, "; "))
	}
	return nil
}

func (p *Pipeline) trainables(names []string, verb string) ([]Trainable, error) {
	var out []Trainable
	for _, name := range names {
		n, ok := p.nodes[name]
		if !ok {
			return nil, fmt.Errorf("pipeline %q: %s %q: no such node (nodes: %s)", p.name, verb, name, p.knownNodes())
		}
		t, ok := n.(Trainable)
		if !ok {
			return nil, fmt.Errorf("pipeline %q: %s %q: node type %s has no trainable parameters", p.name, verb, name, n.Type())
		}
		out = append(out, t)
	}
	return out, nil
}

// Freeze stops gradient updates of the named nodes. All names are checked before any
// node changes.
func (p *Pipeline) Freeze(names ...string) error {
	ts, err := p.trainables(names, "freeze")
	if err != nil {
		return err
	}
	for i, t := range ts {
		if err := t.Freeze(true); err != nil {
			return fmt.Errorf("pipeline %q: freeze %q: %w", p.name, names[i], err)
		}
	}
	return nil
}

// Unfreeze lets the optimizer update the named nodes' parameters.
func (p *Pipeline) Unfreeze(names ...string) error {
	ts, err := p.trainables(names, "unfreeze")
	if err != nil {
		return err
	}
	for i, t := range ts {
		if err := t.Freeze(false); err != nil {
			return fmt.Errorf("pipeline %q: unfreeze %q: %w", p.name, names[i], err)
		}
	}
	return nil
}

// SetTraining switches every node with train/eval behaviour.
func (p *Pipeline) SetTraining(on bool) {
	for _, name := range p.order {
		if m, ok := p.nodes[name].(Moder); ok {
			m.SetTraining(on)
		}
	}
}

// To moves every node holding tensors to dev.
func (p *Pipeline) To(dev torch.Device) error {
	for _, name := range p.order {
		if m, ok := p.nodes[name].(Mover); ok {
			if err := m.To(dev); err != nil {
				return fmt.Errorf("pipeline %q: node %q to %s: %w", p.name, name, dev, err)
			}
		}
	}
	return nil
}

// Parameters returns the parameters of every unfrozen trainable node, named
// "node.param", in topological order: what the optimizer should update.
func (p *Pipeline) Parameters() []NamedTensor {
	var out []NamedTensor
	for _, name := range p.topo() {
		t, ok := p.nodes[name].(Trainable)
		if !ok || t.Frozen() {
			continue
		}
		for _, nt := range t.Parameters() {
			out = append(out, NamedTensor{Name: name + "." + nt.Name, Tensor: nt.Tensor})
		}
	}
	return out
}

// Close releases the LibTorch memory of every node that owns some.
func (p *Pipeline) Close() {
	for _, name := range p.order {
		if c, ok := p.nodes[name].(Closer); ok {
			c.Close()
		}
	}
}
