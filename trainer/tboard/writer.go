package tboard

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultFlushInterval bounds how stale an event file on disk can be while training runs, so a
// TensorBoard watching the log dir sees progress without every record paying for a write call.
const DefaultFlushInterval = 2 * time.Second

// Options tune a Writer. The zero value gives the defaults.
type Options struct {
	// Suffix, if set, is appended to the file name after the host name (".<Suffix>"), which lets
	// several writers share one log dir without name clashes.
	Suffix string
	// FlushInterval is how often buffered records are written to the file by a background
	// goroutine; 0 means DefaultFlushInterval, a negative value disables the goroutine (records
	// then reach the file on Flush, Close, or when the buffer fills).
	FlushInterval time.Duration
}

// Writer appends summaries to one TensorBoard event file. It is safe for concurrent use. Errors
// from the background flush are remembered and returned by the next call.
type Writer struct {
	mu     sync.Mutex
	f      *os.File
	bw     *bufio.Writer
	path   string
	err    error // first write/flush error; sticky
	closed bool
	buf    []byte // reused framing buffer

	stop chan struct{}
	done chan struct{}
}

// NewWriter creates logdir if needed and opens a new event file in it with default options.
func NewWriter(logdir string) (*Writer, error) {
	return NewWriterOptions(logdir, Options{})
}

// NewWriterOptions is NewWriter with explicit Options.
func NewWriterOptions(logdir string, opt Options) (*Writer, error) {
	if logdir == "" {
		return nil, errors.New("tboard: empty log dir")
	}
	if strings.ContainsAny(opt.Suffix, `/\`) {
		return nil, fmt.Errorf("tboard: file name suffix %q must not contain a path separator", opt.Suffix)
	}
	if err := os.MkdirAll(logdir, 0o755); err != nil {
		return nil, fmt.Errorf("tboard: create log dir: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.NewReplacer("/", "_", `\`, "_").Replace(host)
	now := time.Now()
	base := "events.out.tfevents." + strconv.FormatInt(now.Unix(), 10) + "." + host
	if opt.Suffix != "" {
		base += "." + opt.Suffix
	}
	// O_EXCL: two writers started in the same second must not interleave records in one file.
	var f *os.File
	var path string
	for i := 0; ; i++ {
		name := base
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		path = filepath.Join(logdir, name)
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i >= 1000 {
			return nil, fmt.Errorf("tboard: create event file: %w", err)
		}
	}
	w := &Writer{f: f, bw: bufio.NewWriterSize(f, 256<<10), path: path}
	if err := w.writeEvent(encodeEvent(wallTime(now), 0, fileVersion, nil)); err != nil {
		f.Close()
		return nil, err
	}
	// Flush the header at once so the file is recognisable even if the process dies early.
	if err := w.bw.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("tboard: write %s: %w", path, err)
	}
	interval := opt.FlushInterval
	if interval == 0 {
		interval = DefaultFlushInterval
	}
	if interval > 0 {
		w.stop = make(chan struct{})
		w.done = make(chan struct{})
		go w.flushLoop(interval)
	}
	return w, nil
}

// Path returns the event file's path.
func (w *Writer) Path() string { return w.path }

func (w *Writer) flushLoop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.mu.Lock()
			if !w.closed && w.err == nil && w.bw.Buffered() > 0 {
				if err := w.bw.Flush(); err != nil {
					w.err = fmt.Errorf("tboard: write %s: %w", w.path, err)
				}
			}
			w.mu.Unlock()
		}
	}
}

func wallTime(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

// writeEvent frames ev into the buffer; the caller holds mu (or owns w exclusively).
func (w *Writer) writeEvent(ev []byte) error {
	if w.closed {
		return fmt.Errorf("tboard: write to closed writer %s", w.path)
	}
	if w.err != nil {
		return w.err
	}
	w.buf = appendRecord(w.buf[:0], ev)
	if _, err := w.bw.Write(w.buf); err != nil {
		w.err = fmt.Errorf("tboard: write %s: %w", w.path, err)
		return w.err
	}
	return nil
}

func (w *Writer) addValue(step int64, value []byte) error {
	ev := encodeEvent(wallTime(time.Now()), step, "", encodeSummary(value))
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeEvent(ev)
}

func checkTag(tag string) error {
	if tag == "" {
		return errors.New("tboard: empty tag")
	}
	return nil
}

// AddScalar logs value under tag at step. The value is stored as the legacy float32 simple_value,
// which TensorBoard's scalar dashboard reads directly.
func (w *Writer) AddScalar(tag string, value float64, step int64) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	return w.addValue(step, encodeScalarValue(tag, float32(value)))
}

// AddImage logs img as a PNG. The colorspace field follows what PNG encoding will store:
// 1 for gray images, 3 for opaque colour images, 4 when any pixel is translucent.
func (w *Writer) AddImage(tag string, img image.Image, step int64) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	if img == nil {
		return fmt.Errorf("tboard: image %q is nil", tag)
	}
	b := img.Bounds()
	if b.Empty() {
		return fmt.Errorf("tboard: image %q is empty (%v)", tag, b)
	}
	var enc bytes.Buffer
	if err := png.Encode(&enc, img); err != nil {
		return fmt.Errorf("tboard: encode image %q: %w", tag, err)
	}
	return w.addValue(step, encodeImageValue(tag, b.Dy(), b.Dx(), colorspaceOf(img), enc.Bytes()))
}

func colorspaceOf(img image.Image) int {
	switch img.(type) {
	case *image.Gray, *image.Gray16:
		return 1
	}
	if o, ok := img.(interface{ Opaque() bool }); ok {
		if o.Opaque() {
			return 3
		}
		return 4
	}
	// Unknown image type: scan the alpha channel as png.Encode would.
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if _, _, _, a := img.At(x, y).RGBA(); a != 0xffff {
				return 4
			}
		}
	}
	return 3
}

// FloatImage converts a row-major HWC float image with values in [0,1] (values outside are
// clamped, NaN becomes 0) and 1 or 3 channels, inferred from len(hwc), into an 8-bit image.
func FloatImage(hwc []float32, h, w int) (image.Image, error) {
	if h <= 0 || w <= 0 {
		return nil, fmt.Errorf("tboard: image size %dx%d must be positive", h, w)
	}
	to8 := func(v float32) uint8 {
		if !(v > 0) { // also NaN
			return 0
		}
		if v >= 1 {
			return 255
		}
		return uint8(math.Round(float64(v) * 255))
	}
	switch len(hwc) {
	case h * w:
		g := image.NewGray(image.Rect(0, 0, w, h))
		for i, v := range hwc {
			g.Pix[i] = to8(v)
		}
		return g, nil
	case h * w * 3:
		m := image.NewRGBA(image.Rect(0, 0, w, h))
		for i := 0; i < h*w; i++ {
			m.SetRGBA(i%w, i/w, color.RGBA{to8(hwc[3*i]), to8(hwc[3*i+1]), to8(hwc[3*i+2]), 255})
		}
		return m, nil
	}
	return nil, fmt.Errorf("tboard: image of %dx%d needs %d (gray) or %d (RGB) values, got %d", h, w, h*w, 3*h*w, len(hwc))
}

// AddImageRGB logs a float HWC image in [0,1] with 3 channels, or 1 channel (gray); the channel
// count is inferred from len(hwc). It exists because model outputs are float tensors, not images.
func (w *Writer) AddImageRGB(tag string, hwc []float32, h, wd int, step int64) error {
	img, err := FloatImage(hwc, h, wd)
	if err != nil {
		return fmt.Errorf("%w (tag %q)", err, tag)
	}
	return w.AddImage(tag, img, step)
}

// AddHistogram logs the distribution of values with TensorFlow's default exponential bucket
// limits (see DefaultBucketLimits). Values must be finite.
func (w *Writer) AddHistogram(tag string, values []float64, step int64) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	h, err := NewHistogram(values, DefaultBucketLimits())
	if err != nil {
		return fmt.Errorf("%w (tag %q)", err, tag)
	}
	return w.AddHistogramProto(tag, h, step)
}

// AddHistogramLinear logs values with bins equal-width buckets between their min and max, which
// resolves narrow distributions (e.g. scores in [0,1]) better than the exponential default.
func (w *Writer) AddHistogramLinear(tag string, values []float64, bins int, step int64) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	lim, err := LinearBucketLimits(values, bins)
	if err != nil {
		return fmt.Errorf("%w (tag %q)", err, tag)
	}
	h, err := NewHistogram(values, lim)
	if err != nil {
		return fmt.Errorf("%w (tag %q)", err, tag)
	}
	return w.AddHistogramProto(tag, h, step)
}

// AddHistogramProto logs a prepared histogram, for callers that aggregate counts themselves.
func (w *Writer) AddHistogramProto(tag string, h *Histogram, step int64) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	if h == nil || len(h.Bucket) == 0 || len(h.Bucket) != len(h.BucketLimit) {
		return fmt.Errorf("tboard: histogram %q needs equal, non-zero numbers of buckets and limits", tag)
	}
	return w.addValue(step, encodeHistoValue(tag, h))
}

// AddText logs text (rendered as markdown by TensorBoard's text plugin) under tag.
func (w *Writer) AddText(tag, text string, step int64) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	return w.addValue(step, encodeTextValue(tag, text))
}

// Flush writes buffered records to the file and syncs it to stable storage.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("tboard: write %s: %w", w.path, err)
		return w.err
	}
	if err := w.f.Sync(); err != nil {
		w.err = fmt.Errorf("tboard: sync %s: %w", w.path, err)
		return w.err
	}
	return nil
}

// Close flushes, syncs and closes the file and stops the background flusher. Calling it again is
// a no-op that returns nil.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	err := w.flushLocked()
	w.closed = true
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("tboard: close %s: %w", w.path, cerr)
	}
	w.mu.Unlock()
	if w.stop != nil {
		close(w.stop)
		<-w.done
	}
	return err
}
