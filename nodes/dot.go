package nodes

import (
	"fmt"
	"strings"
)

// dotEscape escapes text for a Graphviz record label.
func dotEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "{", `\{`, "}", `\}`, "|", `\|`, "<", `\<`, ">", `\>`, " ", `\ `)
	return r.Replace(s)
}

// portID makes a record field id safe for any port name.
func portID(side, name string) string {
	var b strings.Builder
	b.WriteString(side + "_")
	for _, r := range name {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "x%x", r)
		}
	}
	return b.String()
}

func portLabel(s PortSpec) string {
	l := s.Name
	if s.Kind == KindTensor && s.Shape != nil {
		l += " " + shapeString(s.Shape)
	}
	if s.Variadic {
		l += " *"
	}
	if s.Optional {
		l += " ?"
	}
	return l
}

// DOT renders the pipeline as a Graphviz digraph: one record per node (inputs on the
// left, name and type in the middle, outputs on the right) and one edge per connection,
// port to port.
func (p *Pipeline) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  node [shape=record, fontsize=10];\n", p.name)
	for _, name := range p.topo() {
		n := p.nodes[name]
		var ins, outs []string
		for _, s := range n.Inputs() {
			ins = append(ins, "<"+portID("in", s.Name)+"> "+dotEscape(portLabel(s)))
		}
		for _, s := range n.Outputs() {
			outs = append(outs, "<"+portID("out", s.Name)+"> "+dotEscape(portLabel(s)))
		}
		mid := dotEscape(name) + `\n(` + dotEscape(n.Type()) + ")"
		label := "{" + strings.Join(ins, "|") + "}|" + mid + "|{" + strings.Join(outs, "|") + "}"
		fmt.Fprintf(&b, "  %q [label=\"%s\"];\n", name, label)
	}
	for _, e := range p.edges {
		fmt.Fprintf(&b, "  %q:%s -> %q:%s;\n", e.FromNode, portID("out", e.FromPort), e.ToNode, portID("in", e.ToPort))
	}
	b.WriteString("}\n")
	return b.String()
}

// Describe lists the nodes in execution order with their type, stages, where each input
// comes from and the outputs: the text form of `spectraclip graph`.
func (p *Pipeline) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pipeline %s (%d nodes, %d connections)\n", p.name, len(p.nodes), len(p.edges))
	keys := map[string]bool{}
	for _, k := range p.batchKeys {
		keys[k] = true
	}
	for i, name := range p.topo() {
		n := p.nodes[name]
		stages := "all stages"
		if ss := n.Stages(); ss != nil {
			parts := make([]string, len(ss))
			for j, s := range ss {
				parts[j] = string(s)
			}
			stages = strings.Join(parts, ",")
		}
		fmt.Fprintf(&b, "%2d. %s (%s) [%s]\n", i+1, name, n.Type(), stages)
		for _, s := range n.Inputs() {
			var srcs []string
			for _, e := range p.edges {
				if e.ToNode == name && e.ToPort == s.Name {
					srcs = append(srcs, e.FromNode+"."+e.FromPort)
				}
			}
			switch {
			case len(srcs) > 0:
			case keys[s.Name]:
				srcs = []string{"batch[" + s.Name + "]"}
			case s.Optional:
				srcs = []string{"(unconnected, optional)"}
			default:
				srcs = []string{"batch[" + s.Name + "] (undeclared)"}
			}
			fmt.Fprintf(&b, "      in  %-20s <- %s\n", portLabel(s), strings.Join(srcs, ", "))
		}
		for _, s := range n.Outputs() {
			fmt.Fprintf(&b, "      out %s\n", portLabel(s))
		}
	}
	return b.String()
}
