package sweep

import (
	"fmt"
	"image"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/spectraclip/spectraclip/report"
)

// errPoints are plotted points with symmetric y errors.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

// plot writes one PNG per swept key: the sweep's metric (mean over seeds, error bars one
// standard deviation) against the key's values, one line per variant, data source and
// combination of the other swept keys. It returns the files' names.
func (r *Results) plot(dir string) ([]string, error) {
	var files []string
	for _, key := range r.Swept {
		// x positions: the key's values, numerically sorted when all are numbers
		var xs []string
		seen := map[string]bool{}
		for _, s := range r.Settings {
			if v, ok := param(s.Params, key); ok && !seen[v] {
				seen[v] = true
				xs = append(xs, v)
			}
		}
		numeric := true
		for _, v := range xs {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				numeric = false
			}
		}
		if numeric {
			sort.SliceStable(xs, func(i, j int) bool {
				a, _ := strconv.ParseFloat(xs[i], 64)
				b, _ := strconv.ParseFloat(xs[j], 64)
				return a < b
			})
		}
		pos := map[string]float64{}
		for i, v := range xs {
			pos[v] = float64(i)
		}
		series := map[string]*errPoints{}
		var names []string
		for _, s := range r.Settings {
			v, ok := param(s.Params, key)
			st, has := s.Test[r.Metric]
			if !ok || !has || st.N == 0 {
				continue
			}
			var other []string
			for _, kv := range s.Params {
				if kv.Key != key {
					other = append(other, kv.Key+"="+kv.Value)
				}
			}
			name := s.Base
			if s.Data != "" {
				name += " " + s.Data
			}
			if len(other) > 0 {
				name += " " + strings.Join(other, " ")
			}
			e := series[name]
			if e == nil {
				e = &errPoints{}
				series[name] = e
				names = append(names, name)
			}
			sd := 0.0
			if st.Std != nil {
				sd = *st.Std
			}
			e.XYs = append(e.XYs, plotter.XY{X: pos[v], Y: st.Mean})
			e.YErrors = append(e.YErrors, struct{ Low, High float64 }{sd, sd})
		}
		if len(names) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = fmt.Sprintf("test %s against %s (mean ± std over seeds)", r.Metric, key)
		p.X.Label.Text = key
		p.Y.Label.Text = "test " + r.Metric
		p.Add(plotter.NewGrid())
		var ticks []plot.Tick
		for i, v := range xs {
			ticks = append(ticks, plot.Tick{Value: float64(i), Label: v})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = -0.3, float64(len(xs)-1)+0.3
		for i, name := range names {
			e := series[name]
			sort.Sort(byX{e})
			l, pts, err := plotter.NewLinePoints(e.XYs)
			if err != nil {
				return nil, fmt.Errorf("plot %s: %w", key, err)
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.5)
			pts.Color = plotutil.Color(i)
			pts.Shape = plotutil.Shape(i)
			eb, err := plotter.NewYErrorBars(e)
			if err != nil {
				return nil, fmt.Errorf("plot %s: %w", key, err)
			}
			eb.Color = plotutil.Color(i)
			p.Add(l, pts, eb)
			p.Legend.Add(name, l, pts)
		}
		p.Legend.Top = true
		name := "plot_" + sanitize(key) + ".png"
		img := image.NewRGBA(image.Rect(0, 0, 900, 600))
		c := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(96))
		p.Draw(draw.New(c))
		if err := report.SavePNG(filepath.Join(dir, name), c.Image()); err != nil {
			return nil, err
		}
		files = append(files, name)
	}
	return files, nil
}

type byX struct{ e *errPoints }

func (b byX) Len() int           { return len(b.e.XYs) }
func (b byX) Less(i, j int) bool { return b.e.XYs[i].X < b.e.XYs[j].X }
func (b byX) Swap(i, j int) {
	b.e.XYs[i], b.e.XYs[j] = b.e.XYs[j], b.e.XYs[i]
	b.e.YErrors[i], b.e.YErrors[j] = b.e.YErrors[j], b.e.YErrors[i]
}

func param(ps []KV, key string) (string, bool) {
	for _, kv := range ps {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, strings.TrimPrefix(s, "+"))
}
