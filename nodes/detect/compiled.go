package detect

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/torch"
)

// The detector node's runtime parameter: when its compiled package (compiled_path) runs.
const (
	// RuntimeAuto runs the package wherever no gradient flows when it loads on the node's
	// device and matches the detector; otherwise TorchScript, with one warning saying why.
	RuntimeAuto = "auto"
	// RuntimeAOTI runs the package wherever no gradient flows; a package that does not load
	// or does not match is an error.
	RuntimeAOTI = "aoti"
	// RuntimeTorchScript never runs the package.
	RuntimeTorchScript = "torchscript"
)

// AOTIFormat is the "spectraclip.format" an AOTInductor detector package records
// (scripts/export_adaclip.py --aoti).
const AOTIFormat = "spectraclip-detector-aoti/1"

// compiledDetector is a detector's AOTInductor package loaded for one device. It is
// forward-only: the node runs it where autograd does not record (validation, test, infer,
// serve, bench) and its TorchScript module where gradients flow into the reducer.
type compiledDetector struct {
	m        *torch.AOTIModule
	path     string
	dtype    torch.DType // the package's input and output dtype
	maxBatch int         // the largest batch the package was exported for
}

// inputsRe reads the package's input contract, e.g. "float32[1..16,3,224,224]".
var inputsRe = regexp.MustCompile(`^(float32|float16)\[1\.\.(\d+),3,(\d+),(\d+)\]$`)

// loadCompiled (re)loads the node's package for dev, as its runtime says. With RuntimeAuto
// a package that cannot run here leaves the node on TorchScript (warning once per reason);
// with RuntimeAOTI it is an error naming the package and the reason.
func (d *AdaCLIP) loadCompiled(dev torch.Device) error {
	if d.compiledPath == "" || d.runtime == RuntimeTorchScript {
		return nil
	}
	if d.compiled != nil && d.compiled.m.Device() == dev {
		return nil
	}
	d.compiled.close()
	d.compiled = nil
	c, err := openCompiled(d.compiledPath, dev, d.meta, d.imageSize, d.halfActive)
	if err != nil {
		err = fmt.Errorf("compiled detector (compiled_path) %s: %w", d.compiledPath, err)
		if d.runtime == RuntimeAOTI {
			return err
		}
		logrus.WithField("node", d.NodeName).Warnf("%v; runtime auto: running the TorchScript detector instead", err)
		return nil
	}
	d.compiled = c
	return nil
}

// openCompiled loads the package at path for dev and checks it against the detector it
// stands in for: the same format, contract version, detector, backbone, weights and image
// size, a dtype the node can feed (float16 only on CUDA with use_half_precision).
func openCompiled(path string, dev torch.Device, meta Metadata, imageSize int, half bool) (*compiledDetector, error) {
	m, err := torch.LoadAOTI(path, dev)
	if err != nil {
		return nil, err
	}
	c := &compiledDetector{m: m, path: path}
	md := m.Metadata()
	fail := func(format string, a ...any) (*compiledDetector, error) {
		c.close()
		return nil, fmt.Errorf(format, a...)
	}
	if f := md["spectraclip.format"]; f != AOTIFormat {
		return fail("not a spectraclip detector package (spectraclip.format %q, want %q; write one with scripts/export_adaclip.py --aoti)", f, AOTIFormat)
	}
	if cv := md["contract_version"]; cv != strconv.Itoa(ContractVersion) {
		return fail("contract_version %q, this program implements %d", cv, ContractVersion)
	}
	for _, k := range []struct{ key, want string }{
		{"detector_name", meta.DetectorName}, {"backbone", meta.Backbone}, {"weight_name", meta.WeightName},
	} {
		if md[k.key] != k.want {
			return fail("it was compiled from another detector: %s %q, the TorchScript detector's is %q", k.key, md[k.key], k.want)
		}
	}
	g := inputsRe.FindStringSubmatch(md["spectraclip.inputs"])
	if g == nil {
		return fail("its input contract spectraclip.inputs %q is not dtype[1..N,3,S,S]", md["spectraclip.inputs"])
	}
	c.maxBatch, _ = strconv.Atoi(g[2])
	if s, _ := strconv.Atoi(g[3]); s != imageSize || g[3] != g[4] {
		return fail("it takes %s×%s images, the node runs at image_size %d (export it at that size)", g[3], g[4], imageSize)
	}
	c.dtype = torch.Float32
	if g[1] == "float16" {
		if !half {
			return fail("it is a float16 package; the node runs float32 here (use_half_precision on a CUDA device runs float16)")
		}
		c.dtype = torch.Float16
	}
	if c.maxBatch < 1 {
		return fail("its largest batch is %d", c.maxBatch)
	}
	return c, nil
}

// run scores a preprocessed batch x [B,3,S,S] with the package, in chunks of at most its
// largest batch, and returns float32 pixel [B,S,S] and image [B] scores.
func (c *compiledDetector) run(s *torch.Scope, x *torch.Tensor) (pix, img *torch.Tensor, err error) {
	if x.DType() != c.dtype {
		x = s.ToDType(x, c.dtype)
	}
	b := x.Shape()[0]
	var pixs, imgs []*torch.Tensor
	for i := int64(0); i < b; i += int64(c.maxBatch) {
		n := min(int64(c.maxBatch), b-i)
		xi := x
		if n != b {
			xi = s.Contiguous(s.Narrow(x, 0, i, n))
		}
		outs := s.RunAOTI(c.m, xi)
		if err := s.Err(); err != nil {
			return nil, nil, fmt.Errorf("compiled detector %s: %w", c.path, err)
		}
		if len(outs) != 2 {
			return nil, nil, fmt.Errorf("compiled detector %s returned %d outputs, want 2", c.path, len(outs))
		}
		pixs, imgs = append(pixs, outs[0]), append(imgs, outs[1])
	}
	pix, img = pixs[0], imgs[0]
	if len(pixs) > 1 {
		pix, img = s.Cat(0, pixs...), s.Cat(0, imgs...)
	}
	if pix.DType() != torch.Float32 {
		pix = s.ToDType(pix, torch.Float32)
	}
	if img.DType() != torch.Float32 {
		img = s.ToDType(img, torch.Float32)
	}
	return pix, img, s.Err()
}

func (c *compiledDetector) close() {
	if c != nil {
		c.m.Close()
	}
}

// Runtime says which runtime scores where no gradient flows: "aoti" when the compiled
// package is loaded, else "torchscript".
func (d *AdaCLIP) Runtime() string {
	if d.compiled != nil {
		return RuntimeAOTI
	}
	return RuntimeTorchScript
}
