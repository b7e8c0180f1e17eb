// Package nodes holds spectraclip's pipeline graph: nodes with typed ports, their
// registry, plugin loading, and (in sub-packages) the node families of the workflow.
package nodes

import (
	"fmt"
	"strconv"

	"github.com/spectraclip/spectraclip/torch"
)

// Stage is the phase a pipeline runs in.
type Stage string

// The four stages of the reference; a node declares the ones it runs in.
const (
	StageTrain     Stage = "train"
	StageVal       Stage = "val"
	StageTest      Stage = "test"
	StageInference Stage = "inference"
)

// AllStages lists every stage.
var AllStages = []Stage{StageTrain, StageVal, StageTest, StageInference}

// ParseStage reads a stage name.
func ParseStage(s string) (Stage, error) {
	for _, st := range AllStages {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown stage %q (allowed: train, val, test, inference)", s)
}

// PortKind says what travels through a port.
type PortKind int

const (
	// KindTensor ports carry *torch.Tensor values.
	KindTensor PortKind = iota
	// KindValue ports carry plain Go values (wavelengths []float32, frame ids []int,
	// metric lists, artifacts); the spec's DType and Shape are not checked for them.
	KindValue
)

// Dim is one entry of a port shape: a number ("3"), a wildcard ("-1") or a symbolic name
// ("B", "C", "out_channels") that the node may resolve through DimResolver; unresolved
// names act as wildcards.
type Dim string

// PortSpec declares one input or output port.
type PortSpec struct {
	Name     string
	Kind     PortKind
	DType    torch.DType
	AnyDType bool // accept any dtype
	Shape    []Dim
	Optional bool // an input that may stay unconnected
	Variadic bool // an input that collects every incoming value into a []any
	Doc      string
}

// Fixed reports the numeric value of d when it is a number other than -1.
func (d Dim) Fixed() (int64, bool) {
	v, err := strconv.ParseInt(string(d), 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

// Wildcard reports whether d is "-1" or "*".
func (d Dim) Wildcard() bool { return d == "-1" || d == "*" || d == "" }

// Shape is a helper to write port shapes: Shape("B","H","W","C") or Shape("-1","3").
func Shape(dims ...string) []Dim {
	out := make([]Dim, len(dims))
	for i, d := range dims {
		out[i] = Dim(d)
	}
	return out
}

// Context is what a node sees of the run: the stage, the position in training, the scope
// that owns the tensors of this step and the device.
type Context struct {
	Stage      Stage
	Epoch      int
	MaxEpochs  int
	BatchIdx   int
	GlobalStep int64
	Scope      *torch.Scope
	Device     torch.Device
}

// Node is one operation of a pipeline. Forward receives its inputs by port name and
// returns its outputs by port name. Tensor outputs should belong to ctx.Scope (or be
// parameters the node owns); a node never frees its inputs.
type Node interface {
	Name() string
	SetName(name string)
	// Type is the registered type name the node was built from.
	Type() string
	Inputs() []PortSpec
	Outputs() []PortSpec
	// Stages lists the stages the node runs in; nil means all.
	Stages() []Stage
	// Params returns the node's constructor parameters (for YAML serialisation).
	Params() map[string]any
	Forward(ctx *Context, in map[string]any) (map[string]any, error)
}

// DimResolver resolves a node's symbolic port dims (e.g. "out_channels" → 3).
type DimResolver interface {
	ResolveDim(name string) (int64, bool)
}

// Fitter is a node that needs a statistical pass over the training data before use
// (PCA, running min-max). The trainer calls FitReset, then FitBatch for each training batch
// with the node's inputs (the pipeline run up to the node), then FitFinish.
type Fitter interface {
	RequiresFit() bool
	FitReset() error
	FitBatch(ctx *Context, in map[string]any) error
	FitFinish() error
	Fitted() bool
}

// NamedTensor is a parameter or buffer with its name inside the node.
type NamedTensor struct {
	Name   string
	Tensor *torch.Tensor
}

// Trainable is a node with parameters an optimizer can update.
type Trainable interface {
	// Parameters returns the tensors an optimizer should update when the node is not
	// frozen (each requires grad then).
	Parameters() []NamedTensor
	// Freeze turns gradient recording of the node's parameters off (true) or on (false).
	Freeze(frozen bool) error
	Frozen() bool
}

// Stateful is a node whose parameters and buffers can be saved and restored.
type Stateful interface {
	// State returns every parameter and buffer by name; the tensors stay owned by the node.
	State() []NamedTensor
	// LoadState copies saved tensors into the node (names as in State); a node that
	// needs a fit counts as fitted afterwards.
	LoadState(state map[string]*torch.Tensor) error
}

// Moder is a node with train and eval behaviour.
type Moder interface{ SetTraining(on bool) }

// Mover is a node that holds tensors on a device.
type Mover interface{ To(dev torch.Device) error }

// Closer is a node that owns LibTorch memory to release.
type Closer interface{ Close() }

// RunsIn reports whether a node runs in the stage.
func RunsIn(n Node, st Stage) bool {
	ss := n.Stages()
	if ss == nil {
		return true
	}
	for _, s := range ss {
		if s == st {
			return true
		}
	}
	return false
}

// Base carries the name and type that every node has; embed it.
type Base struct {
	NodeName string
	TypeName string
}

// Name returns the node's name in its pipeline.
func (b *Base) Name() string { return b.NodeName }

// SetName renames the node (the pipeline does it to make names unique).
func (b *Base) SetName(n string) { b.NodeName = n }

// Type returns the registered type name.
func (b *Base) Type() string { return b.TypeName }

// TensorInput returns the tensor fed to a node's input port, or an error naming the node
// and the port when it is missing or not a live tensor.
func TensorInput(node string, in map[string]any, port string) (*torch.Tensor, error) {
	v, ok := in[port]
	if !ok || v == nil {
		return nil, fmt.Errorf("node %q: input %q is missing", node, port)
	}
	t, ok := v.(*torch.Tensor)
	if !ok || !t.Valid() {
		return nil, fmt.Errorf("node %q: input %q: want a tensor, got %T", node, port, v)
	}
	return t, nil
}

// AffineSource is a node whose output is, in the current state, an affine map of its
// "data" input: out = scale·data + shift with scalar scale and shift (a fitted global
// min-max normaliser). ok is false when the node is not in such a state.
type AffineSource interface {
	InputAffine() (scale, shift float64, ok bool)
}

// AffineSink is a node that can absorb an affine map of its "data" input into its own
// first linear operation: ForwardAffine(ctx, in, a, b) must equal Forward(ctx, in') where
// in'["data"] = a·in["data"] + b. The pipeline then skips the source node, which saves a
// full pass over (and a copy of) the cube.
type AffineSink interface {
	ForwardAffine(ctx *Context, in map[string]any, scale, shift float64) (map[string]any, error)
}
