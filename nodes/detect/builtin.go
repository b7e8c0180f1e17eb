// Package detect holds the anomaly detectors of the workflow: the AdaCLIPDetector node
// (any TorchScript module meeting the detector contract, including the built-in zero-shot
// detector that this package generates itself) and the classical global RX detector.
package detect

import (
	"fmt"
	"strings"

	"github.com/spectraclip/spectraclip/torch"
)

// ContractVersion is the detector contract version this package implements: forward(x
// [B,3,S,S] CLIP-normalised) returns (pixel_scores [B,S,S] in [0,1], image_scores [B]),
// with metadata attributes image_size, backbone, prompt, weight_name, detector_name and
// contract_version.
const ContractVersion = 1

// BuiltinName is the detector_name of the built-in detector. It is deliberately not
// "AdaCLIP": the built-in scorer is a training-free Mahalanobis detector, and results
// produced with it must say so.
const BuiltinName = "builtin-mahalanobis"

// CLIP normalisation constants (OpenAI CLIP), shared by the detector node and the built-in
// module, which undoes them to get back to [0,1] RGB.
var (
	clipMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	clipStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// BuiltinOptions shapes the built-in detector. The zero value gives the defaults.
type BuiltinOptions struct {
	// ImageSize is the side S the module advertises (default 224). The scorer itself works
	// at any size; S only fixes what the detector node resizes to, so a small S keeps
	// training on a CPU fast.
	ImageSize int
	// Scales are the odd window sides of the local-mean features (default 3, 7, 15).
	Scales []int
	// Ridge is added to the covariance diagonal as a fraction of its mean variance
	// (default 1e-3), so flat images still have an invertible covariance.
	Ridge float64
	// Prompt is recorded as metadata only; the built-in detector does not read text.
	Prompt string
}

func (o BuiltinOptions) withDefaults() (BuiltinOptions, error) {
	if o.ImageSize == 0 {
		o.ImageSize = 224
	}
	if o.ImageSize < 8 || o.ImageSize > MaxImageSize {
		return o, fmt.Errorf("builtin detector: image size %d is out of range 8..%d", o.ImageSize, MaxImageSize)
	}
	if o.Scales == nil {
		o.Scales = []int{3, 7, 15}
	}
	for _, k := range o.Scales {
		if k < 3 || k%2 == 0 || k > o.ImageSize {
			return o, fmt.Errorf("builtin detector: scale %d must be odd, >= 3 and <= the image size %d", k, o.ImageSize)
		}
	}
	if o.Ridge == 0 {
		o.Ridge = 1e-3
	}
	if o.Ridge < 0 {
		return o, fmt.Errorf("builtin detector: ridge %g must be positive", o.Ridge)
	}
	return o, nil
}

// builtinSource is the TorchScript of the built-in detector. Per pixel it builds features
// from the de-normalised RGB: a 3×3 local mean (denoised colour) and, for every scale k,
// the contrast between that and the k×k neighbourhood mean. Local means are box filters
// clipped at the border (avg_pool2d with count_include_pad=False), computed from a float64
// integral image so that their cost does not grow with k (avg_pool2d's does, k² per pixel). Each pixel is scored by
// its Mahalanobis distance d² to the image's own feature mean and covariance (RX on the
// feature image): everything is per image, so a batch never mixes images. The distance is
// mapped to [0,1] by 1 − exp(−d²/(2F)) (F features), smooth and monotone, so gradients flow
// to the input. Statistics are computed in float32 and the covariance is inverted in
// float64 whatever the input precision (fp16 on CUDA would lose the small eigenvalues).
const builtinSource = `
def box_mean(self, p: Tensor, h: int, w: int, k: int) -> Tensor:
    r = k // 2
    ys = torch.arange(h, device=p.device)
    xs = torch.arange(w, device=p.device)
    y0 = (ys - r).clamp_min(0)
    y1 = (ys + r + 1).clamp_max(h)
    x0 = (xs - r).clamp_min(0)
    x1 = (xs + r + 1).clamp_max(w)
    a = p.index_select(2, y1) - p.index_select(2, y0)
    s = a.index_select(3, x1) - a.index_select(3, x0)
    cnt = ((y1 - y0).view(1, 1, h, 1) * (x1 - x0).view(1, 1, 1, w)).to(p.dtype)
    return s / cnt

def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    b = x.size(0)
    h = x.size(2)
    w = x.size(3)
    xf = x.float()
    rgb = xf * self.clip_std.float() + self.clip_mean.float()
    p = torch.constant_pad_nd(rgb.double().cumsum(2).cumsum(3), [1, 0, 1, 0], 0.0)
    base = self.box_mean(p, h, w, 3)
    feats: List[Tensor] = [base]
%s    f = torch.cat(feats, 1).float()
    nf = f.size(1)
    n = h * w
    f = f.reshape(b, nf, n)
    mu = f.mean(2, True)
    fc = f - mu
    cov = torch.bmm(fc, fc.transpose(1, 2)).double() / float(n - 1)
    tr = torch.diagonal(cov, 0, -2, -1).mean(-1)
    eye = torch.eye(nf, device=cov.device).to(cov.dtype).unsqueeze(0)
    reg = cov + (tr * self.ridge + 1e-12).view(b, 1, 1) * eye
    inv = torch.linalg_inv(reg).float()
    d = (torch.bmm(inv, fc) * fc).sum(1).clamp_min(0.0)
    score = 1.0 - torch.exp(-d / (2.0 * float(nf)))
    k = max(1, n // 100)
    top, _ = torch.topk(score, k, 1)
    img = top.mean(1)
    return score.reshape(b, h, w).to(x.dtype), img.to(x.dtype)
`

func builtinScaleLines(scales []int) string {
	var sb strings.Builder
	for _, k := range scales {
		fmt.Fprintf(&sb, "    feats.append(base - self.box_mean(p, h, w, %d))\n", k)
	}
	return sb.String()
}

// BuildBuiltin generates the built-in zero-shot detector as a TorchScript module on the
// CPU, from Go through LibTorch's script compiler: no Python and no download, so every
// command and test runs on a fresh machine. The caller frees the module.
func BuildBuiltin(opts BuiltinOptions) (*torch.Module, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := torch.NewModule("BuiltinMahalanobisDetector")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*torch.Module, error) {
		m.Free()
		return nil, fmt.Errorf("builtin detector: %w", err)
	}
	scales := make([]string, len(o.Scales))
	for i, k := range o.Scales {
		scales[i] = fmt.Sprint(k)
	}
	attrs := []struct {
		name string
		set  func() error
	}{
		{"image_size", func() error { return m.SetAttrInt("image_size", int64(o.ImageSize)) }},
		{"backbone", func() error { return m.SetAttrString("backbone", "none") }},
		{"prompt", func() error { return m.SetAttrString("prompt", o.Prompt) }},
		{"weight_name", func() error { return m.SetAttrString("weight_name", "none") }},
		{"detector_name", func() error { return m.SetAttrString("detector_name", BuiltinName) }},
		{"contract_version", func() error { return m.SetAttrInt("contract_version", ContractVersion) }},
		{"ridge", func() error { return m.SetAttrFloat("ridge", o.Ridge) }},
		{"scales", func() error { return m.SetAttrString("scales", strings.Join(scales, ",")) }},
	}
	for _, a := range attrs {
		if err := a.set(); err != nil {
			return fail(err)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	mean := s.FromFloat32(clipMean[:], 1, 3, 1, 1)
	std := s.FromFloat32(clipStd[:], 1, 3, 1, 1)
	if err := s.Err(); err != nil {
		return fail(err)
	}
	if err := m.RegisterBuffer("clip_mean", mean); err != nil {
		return fail(err)
	}
	if err := m.RegisterBuffer("clip_std", std); err != nil {
		return fail(err)
	}
	if err := m.Define(fmt.Sprintf(builtinSource, builtinScaleLines(o.Scales))); err != nil {
		return fail(err)
	}
	if err := m.Train(false); err != nil {
		return fail(err)
	}
	return m, nil
}

// WriteBuiltin writes the built-in detector as a TorchScript file that torch.jit.load (and
// the detector node's detector_path) can read.
func WriteBuiltin(path string, opts BuiltinOptions) error {
	m, err := BuildBuiltin(opts)
	if err != nil {
		return err
	}
	defer m.Free()
	if err := m.Save(path); err != nil {
		return fmt.Errorf("builtin detector: write %s: %w", path, err)
	}
	return nil
}
