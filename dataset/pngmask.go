package dataset

import (
	"fmt"
	"image"
	"image/png"
	"io"
)

// ReadPNGMask reads a label mask stored as an 8- or 16-bit grayscale (or paletted) PNG, where
// each pixel value (palette index for paletted images) is a class id.
func ReadPNGMask(path string) (*LabelImage, error) {
	f, _, err := openRegular(path, "png mask")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		return nil, fmt.Errorf("png mask %s: %w", path, err)
	}
	// The decoded image and the label map take up to 6 bytes per pixel; check the declared size
	// before decoding a possibly tiny, highly compressed file.
	if err := checkCubeSize("png mask "+path, fmt.Sprintf("a %d×%d mask", cfg.Height, cfg.Width), int64(cfg.Width)*int64(cfg.Height)*3/2); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("png mask %s: %w", path, err)
	}
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("png mask %s: %w", path, err)
	}
	b := img.Bounds()
	h, w := b.Dy(), b.Dx()
	out := &LabelImage{H: h, W: w, IDs: make([]int32, h*w), Source: path}
	switch m := img.(type) {
	case *image.Gray:
		for r := 0; r < h; r++ {
			for c := 0; c < w; c++ {
				out.IDs[r*w+c] = int32(m.Pix[r*m.Stride+c])
			}
		}
	case *image.Gray16:
		for r := 0; r < h; r++ {
			for c := 0; c < w; c++ {
				o := r*m.Stride + 2*c
				out.IDs[r*w+c] = int32(m.Pix[o])<<8 | int32(m.Pix[o+1])
			}
		}
	case *image.Paletted:
		for r := 0; r < h; r++ {
			for c := 0; c < w; c++ {
				out.IDs[r*w+c] = int32(m.Pix[r*m.Stride+c])
			}
		}
	default:
		return nil, fmt.Errorf("png mask %s: color model %T is not a label mask; save class ids as 8- or 16-bit grayscale", path, img)
	}
	return out, nil
}
