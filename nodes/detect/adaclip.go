package detect

import (
	"errors"
	"fmt"
	"math"

	"github.com/sirupsen/logrus"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// AdaCLIPTypeName is the registered type of the detector node; the reference plugin's
// qualified class name is an alias so that its configs load unchanged.
const AdaCLIPTypeName = "AdaCLIPDetector"

// PluginKind is the plugin manifest kind whose nodes this package builds from TorchScript
// files (NewFromFiles).
const PluginKind = "torchscript_detector"

func init() {
	nodes.Register(nodes.TypeInfo{
		Name:    AdaCLIPTypeName,
		Aliases: []string{"cuvis_ai_adaclip.node.adaclip_node.AdaCLIPDetector"},
		Factory: func(name string, params map[string]any) (nodes.Node, error) { return NewAdaCLIP(name, params) },
		Doc: "Zero-shot anomaly detector over a TorchScript module meeting the detector contract " +
			"(detector_path; empty = the built-in Mahalanobis detector). rgb_image [B,H,W,3] → scores [B,H,W,1], anomaly_score [B]. " +
			"image_size: 0..1024 (0 = the module's own); gaussian_sigma: 0..256 pixels (default 4). " +
			"compiled_path: the same detector as an AOTInductor package (.pt2, export_adaclip.py --aoti), run wherever no gradient " +
			"flows (validation, test, infer, serve, bench); runtime: auto (the package when it loads, else TorchScript), aoti " +
			"(the package or an error) or torchscript.",
	})
	nodes.RegisterPluginKind(PluginKind, NewFromFiles)
}

// MaxImageSize is the largest detector input side (image_size, a module's own image_size
// attribute, export-detector --image-size): at 1024 pixels a ViT-L/14 module already holds
// 5329 tokens per image; larger sizes only exhaust memory.
const MaxImageSize = 1024

// MaxGaussianSigma is the largest gaussian_sigma in pixels: the blur kernel has about 8σ+1
// taps, so 256 already spans twice the largest image_size.
const MaxGaussianSigma = 256

// Metadata names the detector behind a node, read from the module's attributes, so that
// outputs and reports say which detector produced them (the built-in one is not AdaCLIP).
type Metadata struct {
	DetectorName    string
	Backbone        string
	Prompt          string
	WeightName      string
	ImageSize       int
	ContractVersion int
	// Path is the TorchScript file, or "" for the built-in detector generated in memory.
	Path string
}

// AdaCLIP is the detector node: the reference AdaCLIPDetector's pre- and post-processing
// around any module that meets the detector contract.
type AdaCLIP struct {
	nodes.Base
	params map[string]any

	path       string
	imageSize  int
	sigma      float64
	padding    string
	half       bool
	warmup     bool
	gradients  bool
	meta       Metadata
	module     *torch.Module
	dev        torch.Device
	halfActive bool // the module is in float16 (use_half_precision on a CUDA device)
	warmedUp   bool
	// compiledPath is an AOTInductor package of the same detector; runtime says when it runs
	// (RuntimeAuto, RuntimeAOTI, RuntimeTorchScript). compiled is loaded for dev by To.
	compiledPath string
	runtime      string
	compiled     *compiledDetector
	standalone   bool // detector_path is a .pt2 package: no TorchScript module, forward only
	closed       bool
	mean, std    *torch.Tensor // [1,3,1,1] on dev, float32
}

// NewAdaCLIP builds the detector node and loads and checks its module now, so that a bad
// detector file fails when the pipeline is built rather than at the first batch.
func NewAdaCLIP(name string, params map[string]any) (*AdaCLIP, error) {
	p := nodes.NewParamReader(name, params)
	d := &AdaCLIP{Base: nodes.Base{NodeName: name, TypeName: AdaCLIPTypeName}, dev: torch.CPU}
	d.path = p.String("detector_path", "")
	d.imageSize = p.Int("image_size", 0)
	d.sigma = p.Float("gaussian_sigma", 4.0)
	d.padding = p.String("blur_padding", "reflect", "reflect", "zero")
	d.half = p.Bool("use_half_precision", false)
	d.warmup = p.Bool("enable_warmup", false)
	d.gradients = p.Bool("enable_gradients", false)
	d.compiledPath = p.String("compiled_path", "")
	d.runtime = p.String("runtime", RuntimeAuto, RuntimeAuto, RuntimeTorchScript, RuntimeAOTI)
	wantWeight := p.String("weight_name", "")
	wantBackbone := p.String("backbone", "")
	wantPrompt := p.String("prompt_text", "")
	p.Check(d.imageSize >= 0 && d.imageSize <= MaxImageSize, "image_size", "must be in 0..%d (0 = the module's own size), got %d", MaxImageSize, d.imageSize)
	p.Check(d.sigma >= 0 && d.sigma <= MaxGaussianSigma, "gaussian_sigma", "must be in 0..%d pixels, got %g", MaxGaussianSigma, d.sigma)
	p.Check(d.runtime != RuntimeAOTI || d.compiledPath != "" || IsCompiledFile(d.path), "runtime", "aoti needs compiled_path (a .pt2 package: scripts/export_adaclip.py --aoti, spectraclip export-detector --aoti)")
	if err := p.Done(); err != nil {
		return nil, err
	}
	d.params = p.Resolved()
	if err := d.load(); err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	log := logrus.WithField("node", name)
	for _, c := range []struct{ key, want, got string }{
		{"weight_name", wantWeight, d.meta.WeightName},
		{"backbone", wantBackbone, d.meta.Backbone},
		{"prompt_text", wantPrompt, d.meta.Prompt},
	} {
		if c.want != "" && c.want != c.got {
			log.Warnf("parameter %s=%q but the detector %s was built with %q; the module's value applies", c.key, c.want, d.describe(), c.got)
		}
	}
	return d, nil
}

// NewFromFiles builds a detector node from a plugin's files (kind "torchscript_detector"):
// the file named "detector" (or "module"), else the plugin's only file, is the TorchScript
// module; params are the node's other parameters.
func NewFromFiles(name string, files map[string]string, params map[string]any) (nodes.Node, error) {
	path := files["detector"]
	if path == "" {
		path = files["module"]
	}
	if path == "" && len(files) == 1 {
		for _, p := range files {
			path = p
		}
	}
	if path == "" {
		return nil, fmt.Errorf("node %q: plugin kind %s needs one file, or one named \"detector\" (got %d files)", name, PluginKind, len(files))
	}
	merged := make(map[string]any, len(params)+1)
	for k, v := range params {
		merged[k] = v
	}
	if old, ok := merged["detector_path"]; ok && old != path && old != "" {
		return nil, fmt.Errorf("node %q: detector_path %v conflicts with the plugin file %s", name, old, path)
	}
	merged["detector_path"] = path
	return NewAdaCLIP(name, merged)
}

func (d *AdaCLIP) describe() string {
	if d.path == "" {
		return "(built-in)"
	}
	return d.path
}

// load reads or generates the module, reads its metadata, freezes it and checks the
// contract with one dummy forward.
func (d *AdaCLIP) load() error {
	if IsCompiledFile(d.path) {
		return d.loadStandalone()
	}
	var m *torch.Module
	var err error
	if d.path == "" {
		size := d.imageSize
		m, err = BuildBuiltin(BuiltinOptions{ImageSize: size})
	} else {
		m, err = torch.LoadModule(d.path, torch.CPU)
	}
	if err != nil {
		return fmt.Errorf("detector %s: %w", d.describe(), err)
	}
	meta, err := readMetadata(m)
	if err != nil {
		m.Free()
		return fmt.Errorf("detector %s: %w", d.describe(), err)
	}
	meta.Path = d.path
	if d.imageSize == 0 {
		d.imageSize = meta.ImageSize
	} else if d.imageSize != meta.ImageSize {
		logrus.WithField("node", d.NodeName).Warnf("image_size=%d overrides the detector's own image_size %d (%s)", d.imageSize, meta.ImageSize, d.describe())
	}
	d.meta = meta
	if err := m.Train(false); err != nil {
		m.Free()
		return err
	}
	if err := m.SetRequiresGrad(false); err != nil {
		m.Free()
		return err
	}
	forward := func(s *torch.Scope, x *torch.Tensor) ([]*torch.Tensor, error) { return s.Forward(m, x), nil }
	if err := checkContract(d.imageSize, torch.CPU, forward); err != nil {
		m.Free()
		return fmt.Errorf("detector %s: %w", d.describe(), err)
	}
	d.module = m
	return d.makeConstants()
}

func readMetadata(m *torch.Module) (Metadata, error) {
	var meta Metadata
	cv, err := m.Attr("contract_version")
	if err != nil {
		return meta, err
	}
	if cv.Kind != "int" {
		return meta, fmt.Errorf("module has no int attribute contract_version (not a spectraclip detector; export it with scripts/export_adaclip.py or spectraclip export-detector)")
	}
	if cv.Int != ContractVersion {
		return meta, fmt.Errorf("contract_version %d is not supported (this program implements %d)", cv.Int, ContractVersion)
	}
	meta.ContractVersion = int(cv.Int)
	is, err := m.Attr("image_size")
	if err != nil {
		return meta, err
	}
	if is.Kind != "int" || is.Int < 1 {
		return meta, fmt.Errorf("module attribute image_size is missing or not a positive int (kind %q, value %d)", is.Kind, is.Int)
	}
	if is.Int > MaxImageSize {
		return meta, fmt.Errorf("module attribute image_size %d is over the maximum of %d", is.Int, MaxImageSize)
	}
	meta.ImageSize = int(is.Int)
	for _, a := range []struct {
		name string
		dst  *string
	}{{"backbone", &meta.Backbone}, {"prompt", &meta.Prompt}, {"weight_name", &meta.WeightName}, {"detector_name", &meta.DetectorName}} {
		v, err := m.Attr(a.name)
		if err != nil {
			return meta, err
		}
		if v.Kind != "string" {
			return meta, fmt.Errorf("module attribute %s is missing or not a string (kind %q)", a.name, v.Kind)
		}
		*a.dst = v.String
	}
	return meta, nil
}

// checkContract runs forward once on a fixed [1,3,S,S] input (on dev) and checks the
// output arity, shapes and range: forward is the TorchScript module's or a package's.
func checkContract(size int, dev torch.Device, forward func(s *torch.Scope, x *torch.Tensor) ([]*torch.Tensor, error)) error {
	s := torch.NewScope()
	defer s.Close()
	var outs []*torch.Tensor
	var err error
	s.NoGrad(func() {
		g, gerr := torch.NewGenerator(1, torch.CPU)
		if gerr != nil {
			s.Fail(gerr)
			return
		}
		defer g.Free()
		x := s.Randn([]int64{1, 3, int64(size), int64(size)}, torch.Float32, torch.CPU, g)
		if dev != torch.CPU {
			x = s.ToDevice(x, dev)
		}
		outs, err = forward(s, x)
	})
	if err == nil {
		err = s.Err()
	}
	if err != nil {
		return fmt.Errorf("forward on a [1,3,%d,%d] test input failed: %w", size, size, err)
	}
	if len(outs) != 2 {
		return fmt.Errorf("forward returned %d tensors, want 2 (pixel_scores [B,S,S], image_scores [B])", len(outs))
	}
	ps, is := outs[0].Shape(), outs[1].Shape()
	if len(ps) != 3 || ps[0] != 1 || ps[1] != int64(size) || ps[2] != int64(size) {
		return fmt.Errorf("forward's pixel_scores have shape %v, want [1,%d,%d]", ps, size, size)
	}
	if len(is) != 1 || is[0] != 1 {
		return fmt.Errorf("forward's image_scores have shape %v, want [1]", is)
	}
	lo, hi := s.Amin(outs[0], false), s.Amax(outs[0], false)
	l, err1 := lo.Item()
	h, err2 := hi.Item()
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if !(l >= -1e-3 && h <= 1+1e-3) {
		return fmt.Errorf("forward's pixel_scores span [%g, %g], want values in [0,1]", l, h)
	}
	return nil
}

func (d *AdaCLIP) makeConstants() error {
	d.mean.Free()
	d.std.Free()
	s := torch.NewScope()
	defer s.Close()
	d.mean = torch.FromSlice(s, d.dev, clipMean[:], 1, 3, 1, 1)
	d.std = torch.FromSlice(s, d.dev, clipStd[:], 1, 3, 1, 1)
	if err := s.Err(); err != nil {
		return err
	}
	s.Keep(d.mean, d.std)
	return nil
}

// Metadata returns the detector's metadata (from its module's attributes).
func (d *AdaCLIP) Metadata() Metadata { return d.meta }

// ImageSize is the side the detector runs at.
func (d *AdaCLIP) ImageSize() int { return d.imageSize }

// Module returns the detector's TorchScript module (owned by the node).
func (d *AdaCLIP) Module() *torch.Module { return d.module }

// Inputs implements nodes.Node.
func (d *AdaCLIP) Inputs() []nodes.PortSpec {
	return []nodes.PortSpec{{Name: "rgb_image", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "3"),
		Doc: "RGB image, [0,1] or [0,255] (detected per image)"}}
}

// Outputs implements nodes.Node.
func (d *AdaCLIP) Outputs() []nodes.PortSpec {
	return []nodes.PortSpec{
		{Name: "scores", DType: torch.Float32, Shape: nodes.Shape("B", "H", "W", "1"), Doc: "pixel anomaly map in [0,1] at the input resolution"},
		{Name: "anomaly_score", DType: torch.Float32, Shape: nodes.Shape("B"), Doc: "image-level anomaly score"},
	}
}

// Stages implements nodes.Node: the detector runs in every stage.
func (d *AdaCLIP) Stages() []nodes.Stage { return nil }

// Params implements nodes.Node.
func (d *AdaCLIP) Params() map[string]any { return d.params }

// To moves the module (converted to float16 when use_half_precision and dev is CUDA) and
// the normalisation constants to dev.
func (d *AdaCLIP) To(dev torch.Device) error {
	if d.closed {
		return fmt.Errorf("node %q: detector is closed", d.NodeName)
	}
	dt := torch.DType(-1)
	half := d.half && dev.Type == torch.DeviceCUDA
	if half {
		dt = torch.Float16
	} else if d.halfActive {
		dt = torch.Float32
	}
	if d.module != nil {
		if err := d.module.To(dev, dt); err != nil {
			return fmt.Errorf("node %q: move detector to %s: %w", d.NodeName, dev, err)
		}
	}
	d.dev = dev
	d.halfActive = half
	if err := d.loadCompiled(dev); err != nil {
		return fmt.Errorf("node %q: %w", d.NodeName, err)
	}
	return d.makeConstants()
}

// Close frees the module, the compiled package and the node's constants.
func (d *AdaCLIP) Close() {
	d.closed = true
	d.module.Free()
	d.module = nil
	d.compiled.close()
	d.compiled = nil
	d.mean.Free()
	d.std.Free()
	d.mean, d.std = nil, nil
}

// Preprocess turns rgb [B,H,W,3] into the module's input [B,3,S,S]: the value range is
// detected per image (max ≤ 1 means [0,1], otherwise [0,255] and that image is divided by
// 255 — the reference tests the whole batch, so one bright image changed the others'
// scores), then clamp to [0,1], BHWC→BCHW, antialiased bicubic resize to S×S (aspect ratio
// not kept, as the reference) and CLIP normalisation, in float16 when the module is.
// Unlike the reference's no-grad path it does not round to uint8: the map stays the same
// function whether gradients are on or off.
func (d *AdaCLIP) Preprocess(s *torch.Scope, rgb *torch.Tensor) (*torch.Tensor, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	sh := rgb.Shape()
	if len(sh) != 4 || sh[3] != 3 {
		return nil, fmt.Errorf("node %q: rgb_image must be [B,H,W,3], got %s", d.NodeName, rgb)
	}
	x := rgb
	if x.Device() != d.dev {
		x = s.ToDevice(x, d.dev)
	}
	if x.DType() != torch.Float32 {
		x = s.ToDType(x, torch.Float32)
	}
	S := int64(d.imageSize)
	if !s.GradEnabled() && d.dev.Type == torch.DeviceCPU && !d.halfActive {
		// the same ops fused into three passes, the same bits (torch.Scope.ClipPreprocess)
		x = s.ClipPreprocess(x, S, d.mean, d.std)
		if err := s.Err(); err != nil {
			return nil, fmt.Errorf("node %q: preprocess: %w", d.NodeName, err)
		}
		return x, nil
	}
	mx := s.Amax(s.Detach(x), true, 1, 2, 3)           // [B,1,1,1]
	big := s.ToDType(s.GtScalar(mx, 1), torch.Float32) // 1 where the image is [0,255]
	factor := s.RSubScalar(s.MulScalar(big, 1-1.0/255), 1)
	x = s.Mul(x, factor)
	x = s.Clamp(x, 0, 1)
	x = s.Contiguous(s.Permute(x, 0, 3, 1, 2))
	if sh[1] != S || sh[2] != S {
		x = s.Interpolate(x, S, S, torch.Bicubic, false, true)
	}
	x = s.Div(s.Sub(x, d.mean), d.std)
	if d.halfActive {
		x = s.ToDType(x, torch.Float16)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: preprocess: %w", d.NodeName, err)
	}
	return x, nil
}

// RunModule runs the detector module on a preprocessed batch (warming it up once first on
// CUDA when enable_warmup) and returns its float32 pixel [B,S,S] and image [B] scores.
func (d *AdaCLIP) RunModule(s *torch.Scope, x *torch.Tensor) (pix, img *torch.Tensor, err error) {
	if d.closed {
		return nil, nil, fmt.Errorf("node %q: detector is closed", d.NodeName)
	}
	if err := s.Err(); err != nil {
		return nil, nil, err
	}
	if d.standalone {
		if d.compiled == nil {
			return nil, nil, fmt.Errorf("node %q: the compiled detector %s is not loaded for %s", d.NodeName, d.path, d.dev)
		}
		if s.GradEnabled() && x.RequiresGrad() {
			return nil, nil, fmt.Errorf("node %q: detector %s is a compiled package, forward only: gradients cannot flow through it (train with its TorchScript as detector_path and the package as compiled_path)", d.NodeName, d.path)
		}
		return d.compiled.run(s, x)
	}
	if d.compiled != nil && !s.GradEnabled() {
		return d.compiled.run(s, x)
	}
	if d.warmup && !d.warmedUp && d.dev.Type == torch.DeviceCUDA {
		d.warmedUp = true
		if err := d.warmUp(x); err != nil {
			logrus.WithField("node", d.NodeName).Warnf("warm-up failed: %v", err)
		}
	}
	outs := s.Forward(d.module, x)
	if err := s.Err(); err != nil {
		return nil, nil, fmt.Errorf("node %q: detector %s: %w", d.NodeName, d.describe(), err)
	}
	if len(outs) != 2 {
		return nil, nil, fmt.Errorf("node %q: detector %s returned %d outputs, want 2", d.NodeName, d.describe(), len(outs))
	}
	pix, img = outs[0], outs[1]
	if pix.DType() != torch.Float32 {
		pix = s.ToDType(pix, torch.Float32)
	}
	if img.DType() != torch.Float32 {
		img = s.ToDType(img, torch.Float32)
	}
	return pix, img, s.Err()
}

func (d *AdaCLIP) warmUp(x *torch.Tensor) error {
	ws := torch.NewScope()
	defer ws.Close()
	ws.NoGrad(func() {
		first := ws.Narrow(x, 0, 0, 1)
		ws.Forward(d.module, first)
	})
	if err := ws.Err(); err != nil {
		return err
	}
	return torch.Synchronize(d.dev)
}

// BlurRadius is the Gaussian kernel radius used for the node's blur_padding: the cuvis
// plugin's floor(3σ)+1 with zero padding, scipy's int(4σ+0.5) with reflect padding.
func BlurRadius(sigma float64, padding string) int64 {
	if padding == "reflect" {
		return int64(4*sigma + 0.5)
	}
	return int64(math.Floor(3*sigma)) + 1
}

// Postprocess smooths the pixel scores [B,S,S] with the Gaussian blur (σ = gaussian_sigma;
// by default reflect padding and radius int(4σ+0.5), upstream AdaCLIP's scipy
// gaussian_filter; blur_padding "zero" is the cuvis plugin's 2·(⌊3σ⌋+1)+1-tap conv2d)
// and resizes them bilinearly (align_corners false) to h×w, returning [B,h,w,1].
func (d *AdaCLIP) Postprocess(s *torch.Scope, pix *torch.Tensor, h, w int64) (*torch.Tensor, error) {
	if err := s.Err(); err != nil {
		return nil, err
	}
	m := pix
	if d.sigma > 0 {
		pad := torch.BlurZero
		if d.padding == "reflect" {
			pad = torch.BlurReflect
		}
		m = s.GaussianBlur(m, d.sigma, BlurRadius(d.sigma, d.padding), pad)
	}
	m = s.Unsqueeze(m, 1)
	sh := pix.Shape()
	if len(sh) == 3 && (sh[1] != h || sh[2] != w) {
		m = s.Interpolate(m, h, w, torch.Bilinear, false, false)
	}
	m = s.Permute(m, 0, 2, 3, 1)
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("node %q: postprocess: %w", d.NodeName, err)
	}
	return m, nil
}

// Forward implements nodes.Node.
func (d *AdaCLIP) Forward(ctx *nodes.Context, in map[string]any) (map[string]any, error) {
	rgb, ok := in["rgb_image"].(*torch.Tensor)
	if !ok || !rgb.Valid() {
		return nil, fmt.Errorf("node %q: input rgb_image is missing or not a tensor (%T)", d.NodeName, in["rgb_image"])
	}
	s := ctx.Scope
	var scores, img *torch.Tensor
	var err error
	run := func() {
		sh := rgb.Shape()
		var x, pix *torch.Tensor
		if x, err = d.Preprocess(s, rgb); err != nil {
			return
		}
		if pix, img, err = d.RunModule(s, x); err != nil {
			return
		}
		if len(sh) == 4 {
			scores, err = d.Postprocess(s, pix, sh[1], sh[2])
		}
	}
	if d.gradients {
		// Keep the scope's own mode: a trainer's no-grad validation stays no-grad.
		run()
	} else {
		s.NoGrad(run)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"scores": scores, "anomaly_score": img}, nil
}

var (
	_ nodes.Node   = (*AdaCLIP)(nil)
	_ nodes.Mover  = (*AdaCLIP)(nil)
	_ nodes.Closer = (*AdaCLIP)(nil)
)
