package serve

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spectraclip/spectraclip/dataset"
)

// readENVIForm reads an ENVI cube sent as multipart/form-data with a part "header" (the
// .hdr text) and a part "data" (the raw file), through the same reader infer uses.
func readENVIForm(r *http.Request, body io.Reader, lim Limits) (*Frame, error) {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil, fmt.Errorf("multipart body: no boundary in Content-Type %q", r.Header.Get("Content-Type"))
	}
	dir, err := os.MkdirTemp("", "spectraclip-serve-envi-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	mr := multipart.NewReader(body, params["boundary"])
	have := map[string]bool{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("multipart body: %w", err)
		}
		var name string
		var max int64
		switch p.FormName() {
		case "header":
			name, max = "cube.hdr", 1<<20
		case "data":
			name, max = "cube.img", lim.MaxBytes*2+1 // float64 data is twice its float32 cube
		default:
			return nil, fmt.Errorf("multipart body: unknown part %q (want header and data)", p.FormName())
		}
		fh, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(fh, io.LimitReader(p, max+1))
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("multipart part %q: %w", p.FormName(), err)
		}
		if lim.MaxBytes > 0 && n > max {
			return nil, fmt.Errorf("multipart part %q is larger than the maximum of %d bytes (--max-cube-mb)", p.FormName(), max-1)
		}
		have[p.FormName()] = true
	}
	if !have["header"] || !have["data"] {
		return nil, fmt.Errorf("multipart body: want parts header (the .hdr) and data (the raw cube), got %v", have)
	}
	h, err := dataset.ReadENVIHeader(filepath.Join(dir, "cube.hdr"))
	if err != nil {
		return nil, fmt.Errorf("ENVI header part: %w", err)
	}
	if _, _, _, err := checkShape([]int64{int64(h.Lines), int64(h.Samples), int64(h.Bands)}, 4, lim); err != nil {
		return nil, fmt.Errorf("ENVI: %w", err)
	}
	// the reader holds the raw data and the float32 cube (in-flight budget, budget.go)
	raw := int64(0)
	if st, err := os.Stat(filepath.Join(dir, "cube.img")); err == nil {
		raw = st.Size()
	}
	if err := lim.need(raw + 4*int64(h.Lines)*int64(h.Samples)*int64(h.Bands)); err != nil {
		return nil, err
	}
	c, err := dataset.ReadENVI(filepath.Join(dir, "cube.hdr"))
	if err != nil {
		return nil, fmt.Errorf("ENVI: %w", err)
	}
	f := &Frame{H: c.H, W: c.W, C: c.C, Data: c.Data}
	if len(c.Wavelengths) == c.C {
		f.Wavelengths = c.Wavelengths
	}
	return f, nil
}
