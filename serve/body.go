package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Reading a request's body within the in-flight budget (budget.go): the declared
// Content-Length is checked against the largest body of its kind (from --max-cube-mb)
// and the memory its decoding will take is reserved before a byte is read.

// bodyLimit is the largest body of a content type for cubes of at most maxBytes bytes, and
// how many bytes of memory reading and decoding one body byte takes at most (the factor, in
// quarters).
func bodyLimit(ct string, maxBytes int64) (limit int64, quarters int64) {
	switch {
	case strings.HasPrefix(ct, "application/json"):
		// base64 is 4/3 of the values; the body itself, plus the decoded values (3/4)
		return maxBytes*4/3 + 1<<20, 7
	case strings.HasPrefix(ct, "multipart/form-data"):
		// a float64 data part is twice the float32 cube; the parts go to files, the cube
		// (float32) is reserved when the header has been read (readENVIForm)
		return 2*maxBytes + 2<<20, 4
	}
	// .npy: the values and a header of at most 64 KiB
	return maxBytes + 1<<17, 4
}

// readFrame reads the request's cube (JSON, multipart ENVI or .npy) within res; jsonID is
// the JSON body's frame_id. It returns the HTTP status for an error.
func (s *Server) readFrame(w http.ResponseWriter, r *http.Request, res *reservation) (f *Frame, jsonID string, code int, err error) {
	ct := r.Header.Get("Content-Type")
	limit, quarters := bodyLimit(ct, s.opts.MaxBytes)
	if r.ContentLength > limit {
		return nil, "", http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes (Content-Length) is larger than the maximum of %d bytes for %s bodies (--max-cube-mb %d)",
			r.ContentLength, limit, kindOf(ct), s.opts.MaxBytes>>20)
	}
	if r.ContentLength > 0 {
		if err := res.need(r.ContentLength * quarters / 4); err != nil {
			return nil, "", budgetStatus(err), err
		}
	}
	br := &budgetReader{r: http.MaxBytesReader(w, r.Body, limit), res: res}
	lim := Limits{MaxBytes: s.opts.MaxBytes, reserve: func(n int64) error { return res.need(br.read + n) }}
	switch {
	case strings.HasPrefix(ct, "application/json"):
		f, jsonID, err = s.readJSON(r, br, res, limit)
	case strings.HasPrefix(ct, "multipart/form-data"):
		f, err = readENVIForm(r, br, lim)
	default:
		f, err = ReadNPY(br, lim)
	}
	if err == nil {
		return f, jsonID, 0, nil
	}
	var mbe *http.MaxBytesError
	var rse *remoteShmError
	switch {
	case errors.As(err, &mbe) || strings.Contains(err.Error(), "larger than the maximum"):
		code = http.StatusRequestEntityTooLarge
	case errors.As(err, &rse):
		code = http.StatusForbidden
	default:
		if busy, never := budgetError(err); busy || never {
			code = budgetStatus(err)
		} else {
			code = http.StatusBadRequest
		}
	}
	return nil, "", code, err
}

func kindOf(ct string) string {
	switch {
	case strings.HasPrefix(ct, "application/json"):
		return "JSON"
	case strings.HasPrefix(ct, "multipart/form-data"):
		return "multipart"
	}
	return ".npy"
}

// budgetStatus: 503 for a request that does not fit now, 413 for one that never will.
func budgetStatus(err error) int {
	if _, never := budgetError(err); never {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusServiceUnavailable
}

// readJSON reads a JSON body whole into one buffer (of its Content-Length: no growing
// copies) and decodes it; anything after the object but white space is refused.
func (s *Server) readJSON(r *http.Request, br *budgetReader, res *reservation, limit int64) (*Frame, string, error) {
	n := r.ContentLength
	if n < 0 {
		n = 64 << 10
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+1))
	for {
		if buf.Available() == 0 {
			// a chunked body: reserve the grown buffer before it is allocated
			if err := res.need(int64(buf.Cap())*2*7/4 + 1<<20); err != nil {
				return nil, "", err
			}
			buf.Grow(buf.Cap())
		}
		k, err := br.Read(buf.AvailableBuffer()[:buf.Available()])
		buf.Write(buf.AvailableBuffer()[:k])
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, "", fmt.Errorf("JSON body is larger than the maximum of %d bytes (--max-cube-mb)", limit)
			}
			if busy, never := budgetError(err); busy || never {
				return nil, "", err
			}
			return nil, "", fmt.Errorf("JSON body: %w", err)
		}
	}
	b := buf.Bytes()
	// decoding holds the body and the values (3/4 of the base64); a string with escapes
	// is first unquoted into a copy of its own
	need := int64(len(b)) * 7 / 4
	if bytes.IndexByte(b, '\\') >= 0 {
		need += int64(len(b))
	}
	if err := res.need(need); err != nil {
		return nil, "", err
	}
	var jc jsonCube
	if err := json.Unmarshal(b, &jc); err != nil {
		return nil, "", fmt.Errorf("JSON body: %w", err)
	}
	b, buf = nil, nil
	var f *Frame
	var err error
	switch {
	case jc.Shm != nil && len(jc.Data) > 0:
		err = errors.New("JSON body has both data and shm: send one")
	case jc.Shm != nil && !localPeer(r.RemoteAddr):
		err = &remoteShmError{r.RemoteAddr}
	case jc.Shm != nil:
		f, err = s.shmFrame(jc.Shape, jc.DType, jc.Shm.Name, jc.Shm.Offset)
	default:
		f, err = FrameFromRaw(jc.Shape, jc.DType, jc.Data, Limits{MaxBytes: s.opts.MaxBytes, reserve: func(n int64) error { return res.need(need + n) }})
	}
	if err != nil {
		return nil, "", err
	}
	f.Wavelengths = jc.Wavelengths
	return f, jc.FrameID, nil
}
