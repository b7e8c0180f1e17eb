package detect

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

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
	want := &d.meta
	if d.standalone {
		want = nil
	}
	c, err := openCompiled(d.compiledPath, dev, want, d.imageSize, d.halfActive)
	if err != nil {
		err = fmt.Errorf("compiled detector (compiled_path) %s: %w", d.compiledPath, err)
		if d.standalone {
			return fmt.Errorf("detector %s on %s: %w", d.path, dev, errors.Unwrap(err))
		}
		if d.runtime == RuntimeAOTI {
			return err
		}
		logrus.WithField("node", d.NodeName).Warnf("%v; runtime auto: running the TorchScript detector instead", err)
		return nil
	}
	if d.standalone {
		if err := checkCompiledContract(c, d.imageSize); err != nil {
			c.close()
			return fmt.Errorf("detector %s: %w", d.path, err)
		}
	}
	d.compiled = c
	return nil
}

// openCompiled loads the package at path for dev and checks it against the detector it
// stands in for: the same format, contract version, detector, backbone, weights and image
// size, a dtype the node can feed (float16 only on CUDA with use_half_precision).
func openCompiled(path string, dev torch.Device, meta *Metadata, imageSize int, half bool) (*compiledDetector, error) {
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
	if meta != nil {
		for _, k := range []struct{ key, want string }{
			{"detector_name", meta.DetectorName}, {"backbone", meta.Backbone}, {"weight_name", meta.WeightName},
		} {
			if md[k.key] != k.want {
				return fail("it was compiled from another detector: %s %q, the TorchScript detector's is %q", k.key, md[k.key], k.want)
			}
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

// IsCompiledFile reports whether a detector file is an AOTInductor package (*.pt2) rather
// than TorchScript; its content is checked when it is loaded.
func IsCompiledFile(path string) bool { return strings.HasSuffix(strings.ToLower(path), ".pt2") }

// loadStandalone sets the node up on a package alone (detector_path *.pt2): its metadata
// (read without loading its code) give the detector's attributes and image size; the package
// itself is loaded for the node's device by To. It is forward only.
func (d *AdaCLIP) loadStandalone() error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("detector %s: %s", d.path, fmt.Sprintf(format, a...))
	}
	switch {
	case d.compiledPath != "":
		return fail("detector_path is already a compiled package: leave compiled_path empty")
	case d.runtime == RuntimeTorchScript:
		return fail("runtime torchscript needs a TorchScript detector_path (.pt)")
	case d.gradients:
		return fail("a compiled package is forward only: enable_gradients needs the detector's TorchScript as detector_path (with the package as compiled_path)")
	}
	md, err := torch.AOTIPackageMetadata(d.path)
	if err != nil {
		return fail("%v", err)
	}
	meta, err := metadataFromPackage(md)
	if err != nil {
		return fail("%v", err)
	}
	meta.Path = d.path
	if d.imageSize != 0 && d.imageSize != meta.ImageSize {
		return fail("the package takes %d×%d images; image_size %d cannot change that (leave it 0 or export the package at that size)", meta.ImageSize, meta.ImageSize, d.imageSize)
	}
	d.imageSize, d.meta = meta.ImageSize, meta
	d.standalone, d.compiledPath, d.runtime = true, d.path, RuntimeAOTI
	if err := d.loadCompiled(torch.CPU); err != nil && md["spectraclip.device"] == "cpu" {
		return err
	}
	return d.makeConstants()
}

// metadataFromPackage reads a detector's attributes from its package's metadata.
func metadataFromPackage(md map[string]string) (Metadata, error) {
	var meta Metadata
	if f := md["spectraclip.format"]; f != AOTIFormat {
		return meta, fmt.Errorf("not a spectraclip detector package (spectraclip.format %q, want %q; write one with scripts/export_adaclip.py --aoti)", f, AOTIFormat)
	}
	cv, err := strconv.Atoi(md["contract_version"])
	if err != nil || cv != ContractVersion {
		return meta, fmt.Errorf("contract_version %q is not supported (this program implements %d)", md["contract_version"], ContractVersion)
	}
	meta.ContractVersion = cv
	is, err := strconv.Atoi(md["image_size"])
	if err != nil || is < 1 || is > MaxImageSize {
		return meta, fmt.Errorf("image_size %q is not in 1..%d", md["image_size"], MaxImageSize)
	}
	meta.ImageSize = is
	meta.DetectorName, meta.Backbone, meta.Prompt, meta.WeightName = md["detector_name"], md["backbone"], md["prompt"], md["weight_name"]
	return meta, nil
}

// checkCompiledContract is checkContract for a package on its device.
func checkCompiledContract(c *compiledDetector, size int) error {
	return checkContract(size, c.m.Device(), func(s *torch.Scope, x *torch.Tensor) ([]*torch.Tensor, error) {
		pix, img, err := c.run(s, x)
		return []*torch.Tensor{pix, img}, err
	})
}
