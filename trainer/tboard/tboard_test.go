package tboard

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bitwiseCRC32C is a table-less, bit-at-a-time CRC32C (reflected polynomial 0x82F63B78), written
// independently of hash/crc32 so that the package's CRC code is checked against another path.
func bitwiseCRC32C(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for k := 0; k < 8; k++ {
			if crc&1 == 1 {
				crc = crc>>1 ^ 0x82F63B78
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

// maskByHand applies the TFRecord mask as a rotate right by 15 bits followed by the delta.
func maskByHand(c uint32) uint32 {
	rot := (c >> 15) | (c << (32 - 15))
	return uint32((uint64(rot) + 0xa282ead8) % (1 << 32))
}

func TestBitwiseCRC32CCheckValue(t *testing.T) {
	// 0xE3069283 is the published CRC-32C check value of "123456789" (RFC 3720 catalogue).
	if got := bitwiseCRC32C([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("bitwise CRC32C(123456789) = %#08x, want 0xe3069283", got)
	}
}

func TestMaskedCRC32CKnownAnswer(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"123456789", maskByHand(0xE3069283)},
		{"brain.Event:2", maskByHand(bitwiseCRC32C([]byte("brain.Event:2")))},
		{"", maskByHand(0)},
	}
	for _, tc := range tests {
		if got := MaskedCRC32C([]byte(tc.in)); got != tc.want {
			t.Errorf("MaskedCRC32C(%q) = %#08x, want %#08x", tc.in, got, tc.want)
		}
	}
}

func TestMaskedCRC32CRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 7, 8, 63, 1000} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		if got, want := MaskedCRC32C(b), maskByHand(bitwiseCRC32C(b)); got != want {
			t.Errorf("n=%d: MaskedCRC32C = %#08x, bitwise = %#08x", n, got, want)
		}
	}
}

type logged struct {
	scalars map[string][]float64 // tag -> values by step index
	rgb     []float32
	gray    []float32
	hvals   []float64
	text    string
}

const imgH, imgW = 5, 7

// writeSample logs fresh random data of every kind and returns what was logged.
func writeSample(t *testing.T, w *Writer, seed uint64) logged {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 99))
	lg := logged{scalars: map[string][]float64{}}
	for step := int64(0); step < 10; step++ {
		for _, tag := range []string{"train/loss", "val/iou"} {
			v := r.NormFloat64()*3 + 1
			lg.scalars[tag] = append(lg.scalars[tag], v)
			if err := w.AddScalar(tag, v, step); err != nil {
				t.Fatal(err)
			}
		}
	}
	lg.rgb = make([]float32, imgH*imgW*3)
	for i := range lg.rgb {
		lg.rgb[i] = r.Float32()*1.2 - 0.1 // some values outside [0,1] to exercise clamping
	}
	if err := w.AddImageRGB("val/rgb", lg.rgb, imgH, imgW, 3); err != nil {
		t.Fatal(err)
	}
	lg.gray = make([]float32, imgH*imgW)
	for i := range lg.gray {
		lg.gray[i] = r.Float32()
	}
	if err := w.AddImageRGB("val/gray", lg.gray, imgH, imgW, 4); err != nil {
		t.Fatal(err)
	}
	lg.hvals = make([]float64, 1000)
	for i := range lg.hvals {
		lg.hvals[i] = r.NormFloat64() * 0.05
	}
	if err := w.AddHistogram("weights", lg.hvals, 5); err != nil {
		t.Fatal(err)
	}
	lg.text = fmt.Sprintf("| key | value |\n|---|---|\n| seed | %d |\nünïcode", seed)
	if err := w.AddText("config", lg.text, 0); err != nil {
		t.Fatal(err)
	}
	return lg
}

func to8(v float32) uint8 {
	f := math.Max(0, math.Min(1, float64(v)))
	return uint8(math.Round(f * 255))
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs", "exp1") // nested, created by NewWriter
	before := float64(time.Now().Unix()) - 1
	w, err := NewWriterOptions(dir, Options{Suffix: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	lg := writeSample(t, w, 7)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	after := float64(time.Now().Unix()) + 1

	host, _ := os.Hostname()
	re := regexp.MustCompile(`^events\.out\.tfevents\.(\d+)\.` + regexp.QuoteMeta(host) + `\.v2$`)
	m := re.FindStringSubmatch(filepath.Base(w.Path()))
	if m == nil {
		t.Fatalf("file name %q does not match %v", filepath.Base(w.Path()), re)
	}
	if sec, _ := strconv.ParseFloat(m[1], 64); sec < before || sec > after {
		t.Errorf("file name time %s outside [%v,%v]", m[1], before, after)
	}
	files, err := EventFiles(dir)
	if err != nil || len(files) != 1 || files[0] != w.Path() {
		t.Fatalf("EventFiles = %v, %v; want [%s]", files, err, w.Path())
	}

	evs, err := ReadEvents(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 20 + 2 + 1 + 1; len(evs) != want {
		t.Fatalf("got %d events, want %d", len(evs), want)
	}
	if evs[0].FileVersion != "brain.Event:2" || len(evs[0].Values) != 0 {
		t.Errorf("first event = %+v, want only file_version brain.Event:2", evs[0])
	}
	got := map[string][]float32{}
	for i, ev := range evs {
		if ev.WallTime < before || ev.WallTime > after {
			t.Errorf("event %d wall time %v outside [%v,%v]", i, ev.WallTime, before, after)
		}
		if i == 0 {
			continue
		}
		if len(ev.Values) != 1 {
			t.Fatalf("event %d has %d values, want 1", i, len(ev.Values))
		}
		v := ev.Values[0]
		switch v.Kind {
		case KindScalar:
			if int(ev.Step) != len(got[v.Tag]) {
				t.Errorf("scalar %s: step %d out of order", v.Tag, ev.Step)
			}
			got[v.Tag] = append(got[v.Tag], v.Scalar)
		case KindImage:
			checkImage(t, ev, v, lg)
		case KindHistogram:
			if v.Tag != "weights" || ev.Step != 5 {
				t.Errorf("histogram tag/step = %q/%d", v.Tag, ev.Step)
			}
			checkHisto(t, v.Histo, lg.hvals)
		case KindText:
			if v.Tag != "config" || v.PluginName != "text" || len(v.Text) != 1 || v.Text[0] != lg.text {
				t.Errorf("text value = %+v, want %q", v, lg.text)
			}
		default:
			t.Errorf("event %d: unexpected kind %v", i, v.Kind)
		}
	}
	for tag, want := range lg.scalars {
		if len(got[tag]) != len(want) {
			t.Fatalf("%s: %d scalars read, %d written", tag, len(got[tag]), len(want))
		}
		for i := range want {
			// simple_value is float32: exact up to float32 rounding.
			if got[tag][i] != float32(want[i]) {
				t.Errorf("%s step %d: %v, want %v", tag, i, got[tag][i], float32(want[i]))
			}
		}
	}
}

func checkImage(t *testing.T, ev Event, v Value, lg logged) {
	t.Helper()
	im := v.Image
	if im.Height != imgH || im.Width != imgW {
		t.Errorf("%s: dims %dx%d, want %dx%d", v.Tag, im.Height, im.Width, imgH, imgW)
	}
	dec, err := png.Decode(bytes.NewReader(im.Encoded))
	if err != nil {
		t.Fatalf("%s: PNG decode: %v", v.Tag, err)
	}
	if dec.Bounds().Dx() != imgW || dec.Bounds().Dy() != imgH {
		t.Fatalf("%s: PNG bounds %v", v.Tag, dec.Bounds())
	}
	switch v.Tag {
	case "val/rgb":
		if im.Colorspace != 3 || ev.Step != 3 {
			t.Errorf("rgb colorspace/step = %d/%d, want 3/3", im.Colorspace, ev.Step)
		}
		for y := 0; y < imgH; y++ {
			for x := 0; x < imgW; x++ {
				c := color.NRGBAModel.Convert(dec.At(x, y)).(color.NRGBA)
				i := 3 * (y*imgW + x)
				want := color.NRGBA{to8(lg.rgb[i]), to8(lg.rgb[i+1]), to8(lg.rgb[i+2]), 255}
				if c != want {
					t.Fatalf("rgb pixel (%d,%d) = %v, want %v", x, y, c, want)
				}
			}
		}
	case "val/gray":
		if im.Colorspace != 1 || ev.Step != 4 {
			t.Errorf("gray colorspace/step = %d/%d, want 1/4", im.Colorspace, ev.Step)
		}
		for y := 0; y < imgH; y++ {
			for x := 0; x < imgW; x++ {
				g := color.GrayModel.Convert(dec.At(x, y)).(color.Gray)
				if want := to8(lg.gray[y*imgW+x]); g.Y != want {
					t.Fatalf("gray pixel (%d,%d) = %d, want %d", x, y, g.Y, want)
				}
			}
		}
	default:
		t.Errorf("unexpected image tag %q", v.Tag)
	}
}

// checkHisto recounts every bucket by brute force with the (lower, upper] rule and compares the
// statistics with float64 sums computed here.
func checkHisto(t *testing.T, h *Histogram, vals []float64) {
	t.Helper()
	if len(h.Bucket) != len(h.BucketLimit) || len(h.Bucket) == 0 {
		t.Fatalf("histogram has %d buckets and %d limits", len(h.Bucket), len(h.BucketLimit))
	}
	mn, mx, sum, ss := math.Inf(1), math.Inf(-1), 0.0, 0.0
	for _, v := range vals {
		mn, mx, sum, ss = math.Min(mn, v), math.Max(mx, v), sum+v, ss+v*v
	}
	if h.Min != mn || h.Max != mx || h.Num != float64(len(vals)) {
		t.Errorf("min/max/num = %v/%v/%v, want %v/%v/%d", h.Min, h.Max, h.Num, mn, mx, len(vals))
	}
	if math.Abs(h.Sum-sum) > 1e-9 || math.Abs(h.SumSquares-ss) > 1e-9 {
		t.Errorf("sum/sumsq = %v/%v, want %v/%v", h.Sum, h.SumSquares, sum, ss)
	}
	total := 0.0
	for i := range h.Bucket {
		lower := -math.MaxFloat64
		if i > 0 {
			lower = h.BucketLimit[i-1]
		}
		n := 0
		for _, v := range vals {
			if v > lower && v <= h.BucketLimit[i] {
				n++
			}
		}
		if float64(n) != h.Bucket[i] {
			t.Errorf("bucket %d (%g,%g]: %v, brute force %d", i, lower, h.BucketLimit[i], h.Bucket[i], n)
		}
		total += h.Bucket[i]
	}
	if total != float64(len(vals)) {
		t.Errorf("bucket counts sum to %v, want %d", total, len(vals))
	}
}

func TestDefaultBucketLimits(t *testing.T) {
	lim := DefaultBucketLimits()
	n := len(lim)
	if n%2 != 1 || lim[n/2] != 0 {
		t.Fatalf("limits: len %d, middle %v; want odd length with 0 in the middle", n, lim[n/2])
	}
	if lim[0] != -math.MaxFloat64 || lim[n-1] != math.MaxFloat64 {
		t.Errorf("outer limits %v, %v; want ∓DBL_MAX", lim[0], lim[n-1])
	}
	if math.Abs(lim[n/2+1]-1e-12) > 1e-24 {
		t.Errorf("first positive limit %v, want 1e-12", lim[n/2+1])
	}
	// The positive side grows by 10% per step until it passes 1e20: count closed-form.
	wantPos := int(math.Ceil(math.Log(1e20/1e-12)/math.Log(1.1))) + 1 // + DBL_MAX
	if got := n / 2; got != wantPos {
		t.Errorf("%d positive limits, want %d", got, wantPos)
	}
	for i := 1; i < n; i++ {
		if lim[i] <= lim[i-1] || lim[i] != -lim[n-1-i] {
			t.Fatalf("limit %d = %v not ascending/symmetric", i, lim[i])
		}
	}
}

func TestLinearHistogram(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vals := make([]float64, 500)
	for i := range vals {
		vals[i] = 2 + 3*r.Float64()
	}
	for _, bins := range []int{1, 2, 10, 64} {
		lim, err := LinearBucketLimits(vals, bins)
		if err != nil {
			t.Fatal(err)
		}
		if len(lim) != bins {
			t.Errorf("bins=%d: %d limits", bins, len(lim))
		}
		h, err := NewHistogram(vals, lim)
		if err != nil {
			t.Fatal(err)
		}
		checkHisto(t, h, vals)
	}
	if lim, err := LinearBucketLimits([]float64{4, 4}, 8); err != nil || len(lim) != 1 || lim[0] != 4 {
		t.Errorf("constant values: limits %v, err %v; want [4]", lim, err)
	}
}

// TestCorruptionDetected flips one byte in each part of a record and expects an error that names
// the file and the record index.
func TestCorruptionDetected(t *testing.T) {
	dir := t.TempDir()
	w, err := NewWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := w.AddScalar("x", float64(i)+0.5, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	// Locate record 2 by walking lengths directly.
	off := 0
	for range 2 {
		off += 12 + int(binary.LittleEndian.Uint64(orig[off:])) + 4
	}
	n := int(binary.LittleEndian.Uint64(orig[off:]))
	tests := []struct {
		name string
		pos  int
		want string
	}{
		{"length", off, "record 2"},
		{"length crc", off + 9, "length CRC mismatch"},
		{"data", off + 12 + n/2, "data CRC mismatch"},
		{"data crc", off + 12 + n + 1, "data CRC mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(orig)
			b[tc.pos] ^= 0x20
			p := filepath.Join(t.TempDir(), "events.out.tfevents.corrupt")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadEvents(p)
			if err == nil {
				t.Fatal("corrupted file read without error")
			}
			for _, s := range []string{p, "record 2", tc.want} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "events.out.tfevents.trunc")
		if err := os.WriteFile(p, orig[:len(orig)-3], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadEvents(p); err == nil || !strings.Contains(err.Error(), "record 4") {
			t.Errorf("truncated file: err = %v, want mention of record 4", err)
		}
	})
}

// TestFramingIndependent parses the written file with its own loop and the bitwise CRC, without
// any of the package's reader code.
func TestFramingIndependent(t *testing.T) {
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	writeSample(t, w, 11)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	recs := 0
	for len(b) > 0 {
		if len(b) < 16 {
			t.Fatalf("record %d: %d trailing bytes", recs, len(b))
		}
		n := binary.LittleEndian.Uint64(b[:8])
		if got, want := binary.LittleEndian.Uint32(b[8:12]), maskByHand(bitwiseCRC32C(b[:8])); got != want {
			t.Fatalf("record %d: length crc %#08x, want %#08x", recs, got, want)
		}
		data := b[12 : 12+n]
		if got, want := binary.LittleEndian.Uint32(b[12+n:16+n]), maskByHand(bitwiseCRC32C(data)); got != want {
			t.Fatalf("record %d: data crc %#08x, want %#08x", recs, got, want)
		}
		if recs == 0 && !bytes.Contains(data, []byte("brain.Event:2")) {
			t.Errorf("record 0 lacks the file version")
		}
		b = b[16+n:]
		recs++
	}
	if recs != 25 {
		t.Errorf("%d records, want 25", recs)
	}
}

// TestProtocDecodeRaw hands each payload to Debian's protoc --decode_raw, an independent protobuf
// decoder, and checks the field layout it reports.
func TestProtocDecodeRaw(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc not installed (apt-get install protobuf-compiler); skipping independent decode")
	}
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const val = 0.8125 // exact in float32: 0x3f500000
	if err := w.AddScalar("val/iou", val, 42); err != nil {
		t.Fatal(err)
	}
	if err := w.AddHistogram("h", []float64{-1.5, 0.25, 0.25, 3}, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.AddText("notes", "hello tb", 2); err != nil {
		t.Fatal(err)
	}
	if err := w.AddImageRGB("img", []float32{0, 0.5, 1, 1, 0.5, 0}, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadRecords(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5", len(recs))
	}
	norm := regexp.MustCompile(`\s+`)
	wants := [][]string{
		{`3: "brain.Event:2"`},
		{`2: 42`, `5 { 1 { 1: "val/iou" 2: 0x3f500000 } }`},
		// HistogramProto: min -1.5 (0xbff8000000000000), num 4 (0x4010000000000000).
		{`2: 1`, `1: "h"`, `1: 0xbff8000000000000`, `3: 0x4010000000000000`},
		{`2: 2`, `1: "notes"`, `9 { 1 { 1: "text" } }`, `1: 7`, `2 { 2 { 1: 1 } }`, `8: "hello tb"`},
		{`2: 3`, `1: "img"`, `4 { 1: 1 2: 2 3: 3 4: "\211PNG`},
	}
	for i, rec := range recs {
		cmd := exec.Command(protoc, "--decode_raw")
		cmd.Stdin = bytes.NewReader(rec)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("record %d: protoc --decode_raw: %v\n%s", i, err, out)
		}
		flat := norm.ReplaceAllString(string(out), " ")
		if !strings.HasPrefix(flat, "1: 0x") {
			t.Errorf("record %d: no wall_time fixed64 first: %s", i, flat)
		}
		for _, want := range wants[i] {
			if !strings.Contains(flat, want) {
				t.Errorf("record %d: protoc output lacks %q:\n%s", i, want, flat)
			}
		}
	}
}

func TestConcurrentWriters(t *testing.T) {
	w, err := NewWriterOptions(t.TempDir(), Options{FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, per = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range per {
				if err := w.AddScalar(fmt.Sprintf("g%d", g), float64(i), int64(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1+goroutines*per {
		t.Fatalf("%d events, want %d", len(evs), 1+goroutines*per)
	}
	next := map[string]int64{}
	for _, ev := range evs[1:] {
		v := ev.Values[0]
		if ev.Step != next[v.Tag] || float64(v.Scalar) != float64(ev.Step) {
			t.Fatalf("tag %s: step %d value %v, want step %d", v.Tag, ev.Step, v.Scalar, next[v.Tag])
		}
		next[v.Tag]++
	}
}

func TestPeriodicFlushAndClose(t *testing.T) {
	w, err := NewWriterOptions(t.TempDir(), Options{FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.AddScalar("a", 1.25, 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := ReadEvents(w.Path())
		if err == nil && len(evs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background flush did not write the record within 5s (events %d, err %v)", len(evs), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := w.Flush(); err != nil {
		t.Errorf("Flush after Close = %v, want nil", err)
	}
	if err := w.AddScalar("a", 2, 2); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("AddScalar after Close = %v, want closed-writer error", err)
	}
}

func TestNoFlushUntilAsked(t *testing.T) {
	w, err := NewWriterOptions(t.TempDir(), Options{FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.AddScalar("a", 1, 1); err != nil {
		t.Fatal(err)
	}
	if evs, err := ReadEvents(w.Path()); err != nil || len(evs) != 1 {
		t.Fatalf("before Flush: %d events, err %v; want only the header", len(evs), err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if evs, err := ReadEvents(w.Path()); err != nil || len(evs) != 2 {
		t.Fatalf("after Flush: %d events, err %v; want 2", len(evs), err)
	}
}

func TestSameSecondWritersGetDistinctFiles(t *testing.T) {
	dir := t.TempDir()
	var ws []*Writer
	for range 3 {
		w, err := NewWriter(dir)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	seen := map[string]bool{}
	for _, w := range ws {
		if seen[w.Path()] {
			t.Errorf("two writers share %s", w.Path())
		}
		seen[w.Path()] = true
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestImageColorspace(t *testing.T) {
	rgba := image.NewNRGBA(image.Rect(0, 0, 2, 2))
	for i := range rgba.Pix {
		rgba.Pix[i] = 200
	}
	opaque := image.NewRGBA(image.Rect(0, 0, 2, 2))
	for i := range opaque.Pix {
		opaque.Pix[i] = 255
	}
	tests := []struct {
		name string
		img  image.Image
		want int
	}{
		{"gray", image.NewGray(image.Rect(0, 0, 3, 2)), 1},
		{"gray16", image.NewGray16(image.Rect(0, 0, 3, 2)), 1},
		{"opaque rgba", opaque, 3},
		{"translucent nrgba", rgba, 4},
	}
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range tests {
		if err := w.AddImage(tc.name, tc.img, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := ReadEvents(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range tests {
		im := evs[i+1].Values[0].Image
		if im.Colorspace != tc.want {
			t.Errorf("%s: colorspace %d, want %d", tc.name, im.Colorspace, tc.want)
		}
		dec, err := png.Decode(bytes.NewReader(im.Encoded))
		if err != nil || dec.Bounds().Size() != tc.img.Bounds().Size() {
			t.Errorf("%s: decoded %v, err %v", tc.name, dec, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	w, err := NewWriter(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"empty tag", func() error { return w.AddScalar("", 1, 0) }, "empty tag"},
		{"rgb length", func() error { return w.AddImageRGB("im", make([]float32, 10), 2, 2, 0) }, `got 10`},
		{"rgb dims", func() error { return w.AddImageRGB("im", nil, 0, 2, 0) }, "must be positive"},
		{"nil image", func() error { return w.AddImage("im", nil, 0) }, "nil"},
		{"empty image", func() error { return w.AddImage("im", image.NewRGBA(image.Rect(0, 0, 0, 3)), 0) }, "empty"},
		{"nan histogram", func() error { return w.AddHistogram("h", []float64{1, math.NaN()}, 0) }, "value 1 is NaN"},
		{"empty histogram", func() error { return w.AddHistogram("h", nil, 0) }, "zero values"},
		{"linear bins", func() error { return w.AddHistogramLinear("h", []float64{1}, 0, 0) }, "bins >= 1"},
		{"bad proto", func() error { return w.AddHistogramProto("h", &Histogram{Bucket: []float64{1}}, 0) }, "equal"},
	}
	for _, tc := range tests {
		err := tc.call()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want mention of %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewWriterOptions(t.TempDir(), Options{Suffix: "a/b"}); err == nil {
		t.Error("suffix with a slash accepted")
	}
	if _, err := NewHistogram([]float64{1, 2}, []float64{3, 3}); err == nil {
		t.Error("non-ascending limits accepted")
	}
	if _, err := ReadEvents(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file read without error")
	}
}
