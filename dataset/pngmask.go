package dataset

import (
	"fmt"
	"image"
	"image/png"
	"os"
)

// ReadPNGMask reads a label mask stored as an 8- or 16-bit grayscale (or paletted) PNG, where
// each pixel value (palette index for paletted images) is a class id.
func ReadPNGMask(path string) (*LabelImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("png mask: %w", err)
	}
	defer f.Close()
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
