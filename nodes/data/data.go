// Package data holds the data node: it turns a loader batch (cube, class ids, wavelengths)
// into the tensors the pipeline consumes, with the binary anomaly mask derived from class
// ids exactly as the reference's LentilsAnomalyDataNode does.
package data

import (
	"fmt"
	"runtime/debug"
	"slices"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// Batch keys the trainer feeds into a pipeline.
const (
	KeyCube        = "cube"        // *torch.Tensor float32 [B,H,W,C]
	KeyClassIDs    = "class_ids"   // []int32 (B·H·W), nil when unlabeled
	KeyWavelengths = "wavelengths" // []float32 [C] (nm)
	KeyFrameIDs    = "frame_ids"   // []int [B]
	KeyShape       = "batch_shape" // [4]int{B,H,W,C}
	// KeyPixelMask restricts the loss and the metrics to some pixels ([]bool B·H·W, true =
	// counted); absent = every pixel. Whole-scene runs (package scene) set it per split.
	KeyPixelMask = "pixel_mask"
)

// BatchKeys lists the keys of a pipeline batch.
var BatchKeys = []string{KeyCube, KeyClassIDs, KeyWavelengths, KeyFrameIDs, KeyShape, KeyPixelMask}

// ToBatch copies a loader batch into a pipeline batch; the cube tensor belongs to s. When
// reuse is a CPU float32 tensor of the right shape it is overwritten instead (no allocation).
// A batch whose cube is the memory of a CPU tensor (Batch.Owner: a scene held in a tensor)
// becomes a view of that tensor on the CPU, not a copy: the pipeline reads the scene where it
// lies, and must not write into its input (no node does).
func ToBatch(s *torch.Scope, b *dataset.Batch, dev torch.Device, reuse *torch.Tensor) (map[string]any, error) {
	var cube *torch.Tensor
	shape := []int64{int64(b.B), int64(b.H), int64(b.W), int64(b.C)}
	if t := ownerTensor(b, dev); t != nil {
		cube = s.View(t, shape...)
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("batch of frames %v: %w", b.FrameIDs, err)
		}
	} else if reuse.Valid() && dev.Type == torch.DeviceCPU && slices.Equal(reuse.Shape(), shape) {
		if err := torch.CopyFrom(reuse, b.Cube); err != nil {
			return nil, err
		}
		cube = reuse
	} else {
		cube = torch.FromSlice(s, dev, b.Cube, shape...)
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("batch of frames %v: %w", b.FrameIDs, err)
		}
	}
	return map[string]any{
		KeyCube:        cube,
		KeyClassIDs:    b.ClassIDs,
		KeyWavelengths: b.Wavelengths,
		KeyFrameIDs:    b.FrameIDs,
		KeyShape:       [4]int{b.B, b.H, b.W, b.C},
	}, nil
}

// ownerTensor returns the CPU float32 tensor whose memory b.Cube is, exactly (the same first
// element and length), when the batch is for the CPU; nil otherwise.
func ownerTensor(b *dataset.Batch, dev torch.Device) *torch.Tensor {
	t, ok := b.Owner.(*torch.Tensor)
	if !ok || !t.Valid() || dev.Type != torch.DeviceCPU || len(b.Cube) == 0 {
		return nil
	}
	v, err := torch.CPUView[float32](t)
	if err != nil || len(v) != len(b.Cube) || &v[0] != &b.Cube[0] {
		return nil
	}
	return t
}

// Node is LentilsAnomalyDataNode: cube passthrough (float32), the binary anomaly mask from
// class ids, wavelengths and frame ids.
type Node struct {
	nodes.Base
	mapping *dataset.AnomalyMapping
	params  map[string]any
	maskBuf []bool
}

var _ nodes.Node = (*Node)(nil)

// New builds the data node. normal_class_ids lists the normal classes; with
// anomaly_class_ids given, only those are anomalies (the rest normal), as the reference.
func New(name string, params map[string]any) (nodes.Node, error) {
	p := nodes.NewParamReader(name, params)
	normal := p.Ints("normal_class_ids", []int{0, 1, 2, 4})
	anomaly := p.Ints("anomaly_class_ids", nil)
	if err := p.Done(); err != nil {
		return nil, err
	}
	m, err := dataset.NewAnomalyMapping(normal, anomaly)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	return &Node{Base: nodes.Base{NodeName: name, TypeName: "LentilsAnomalyDataNode"}, mapping: m, params: p.Resolved()}, nil
}

func init() {
	nodes.Register(nodes.TypeInfo{Name: "LentilsAnomalyDataNode", Aliases: []string{"cuvis_ai.node.data.LentilsAnomalyDataNode"}, Factory: New,
		Doc: "cube passthrough and binary anomaly mask from class ids"})
}

// Mapping returns the anomaly mapping (its Warning mirrors the reference's UserWarning).
func (n *Node) Mapping() *dataset.AnomalyMapping { return n.mapping }

func (n *Node) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: KeyCube, DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "C")},
		{Name: KeyClassIDs, Kind: nodes.KindValue, Optional: true},
		{Name: KeyWavelengths, Kind: nodes.KindValue, Optional: true},
		{Name: KeyFrameIDs, Kind: nodes.KindValue, Optional: true},
		{Name: KeyPixelMask, Kind: nodes.KindValue, Optional: true},
	}
}

func (n *Node) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: "cube", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "C")},
		{Name: "mask", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1")},
		{Name: "wavelengths", Kind: nodes.KindValue},
		{Name: "frame_ids", Kind: nodes.KindValue},
		{Name: "valid", DType: torch.Bool, Shape: nodes.Shape("B", "H", "W", "1"), Doc: "pixels the loss and metrics count (only when the batch has a pixel_mask)"},
	}
}

func (n *Node) Stages() []nodes.Stage { return nil }

func (n *Node) Params() map[string]any { return n.params }

func (n *Node) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	cube, ok := in[KeyCube].(*torch.Tensor)
	if !ok || !cube.Valid() {
		return nil, fmt.Errorf("node %q: input cube missing", n.Name())
	}
	out := map[string]any{"cube": cube, "wavelengths": in[KeyWavelengths], "frame_ids": in[KeyFrameIDs]}
	ids, _ := in[KeyClassIDs].([]int32)
	if ids != nil {
		sh := cube.Shape()
		if int64(len(ids)) != sh[0]*sh[1]*sh[2] {
			return nil, fmt.Errorf("node %q: %d class ids for a cube of shape %v", n.Name(), len(ids), sh)
		}
		n.maskBuf = n.mapping.Apply(ids, n.maskBuf[:0])
		s := ctx.Scope
		mask := torch.FromSlice(s, ctx.Device, n.maskBuf, sh[0], sh[1], sh[2], 1)
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("node %q: %w", n.Name(), err)
		}
		out["mask"] = mask
	}
	if pm, ok := in[KeyPixelMask].([]bool); ok && pm != nil {
		sh := cube.Shape()
		if int64(len(pm)) != sh[0]*sh[1]*sh[2] {
			return nil, fmt.Errorf("node %q: pixel mask of %d values for a cube of shape %v", n.Name(), len(pm), sh)
		}
		s := ctx.Scope
		v := torch.FromSlice(s, ctx.Device, pm, sh[0], sh[1], sh[2], 1)
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("node %q: %w", n.Name(), err)
		}
		out["valid"] = v
	}
	return out, nil
}

// Hold moves a cube's values into a CPU float32 tensor [H,W,C] that becomes c.Owner, c.Data
// then being that tensor's memory: the batches of a whole scene are views of it (ToBatch)
// instead of a second, cube-sized copy. The Go copy is garbage afterwards; Hold returns it
// to the operating system at once, so that holding a scene costs one cube, not two. A cube
// that already has an Owner is left as it is.
func Hold(c *dataset.Cube) error {
	if c == nil || c.Owner != nil || len(c.Data) == 0 {
		return nil
	}
	if len(c.Data) != c.H*c.W*c.C {
		return fmt.Errorf("cube %s: %d values for %d×%d×%d", c.Source, len(c.Data), c.H, c.W, c.C)
	}
	s := torch.NewScope()
	defer s.Close()
	t := s.Empty([]int64{int64(c.H), int64(c.W), int64(c.C)}, torch.Float32, torch.CPU)
	if err := s.Err(); err != nil {
		return fmt.Errorf("cube %s: %w", c.Source, err)
	}
	v, err := torch.CPUView[float32](t)
	if err != nil {
		return fmt.Errorf("cube %s: %w", c.Source, err)
	}
	copy(v, c.Data)
	s.Keep(t)
	c.Data, c.Owner = v, t
	debug.FreeOSMemory()
	return nil
}
