package sweep

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/run"
)

// Row is one point of the results.
type Row struct {
	Index        int            `json:"index"`
	ID           string         `json:"id"`
	Base         string         `json:"variant"`
	Data         string         `json:"data,omitempty"`
	Setting      string         `json:"setting"`
	Params       []KV           `json:"params,omitempty"`
	Seed         *uint64        `json:"seed,omitempty"`
	Status       Status         `json:"status"`
	ExitCode     *int           `json:"exit_code,omitempty"`
	Signal       string         `json:"signal,omitempty"`
	Error        string         `json:"error,omitempty"`
	Attempts     int            `json:"attempts"`
	Resumed      bool           `json:"resumed,omitempty"`
	Test         config.Metrics `json:"test,omitempty"`
	Val          config.Metrics `json:"val,omitempty"`
	TrainSeconds *float64       `json:"train_seconds,omitempty"`
	InferenceFPS *float64       `json:"inference_fps,omitempty"`
	Epochs       int            `json:"epochs,omitempty"`
	Threads      int            `json:"threads,omitempty"`
	RunDir       string         `json:"run_dir"`
	Log          string         `json:"log,omitempty"`
	Command      string         `json:"command,omitempty"`
}

// Stat is a mean and (for two or more values) the sample standard deviation.
type Stat struct {
	Mean float64  `json:"mean"`
	Std  *float64 `json:"std,omitempty"`
	N    int      `json:"n"`
}

// SettingResult aggregates the points of one setting over their seeds.
type SettingResult struct {
	Base         string          `json:"variant"`
	Data         string          `json:"data,omitempty"`
	Setting      string          `json:"setting"`
	Params       []KV            `json:"params,omitempty"`
	Points       int             `json:"points"`
	Done         int             `json:"done"`
	Test         map[string]Stat `json:"test,omitempty"`
	TrainSeconds *Stat           `json:"train_seconds,omitempty"`
	InferenceFPS *Stat           `json:"inference_fps,omitempty"`
	group        string
}

// Best is the best setting of a variant (and data source) by the sweep's metric.
type Best struct {
	Base    string `json:"variant"`
	Data    string `json:"data,omitempty"`
	Setting string `json:"setting"`
	Metric  string `json:"metric"`
	Stat    Stat   `json:"value"`
}

// Results are what sweep.json holds.
type Results struct {
	Name     string          `json:"name"`
	Metric   string          `json:"metric"`
	Created  string          `json:"created"`
	Workdir  string          `json:"workdir"`
	Swept    []string        `json:"swept,omitempty"`
	Metrics  []string        `json:"test_metrics"`
	Points   []Row           `json:"points"`
	Settings []SettingResult `json:"settings"`
	Best     []Best          `json:"best"`
	Plots    []string        `json:"plots,omitempty"`
}

// Collect builds the results from the plan, the points' states and their run directories.
func Collect(dir string, plan *Plan) (*Results, error) {
	res := &Results{Name: plan.Name, Metric: plan.Metric, Created: time.Now().UTC().Format(time.RFC3339), Workdir: plan.Workdir, Swept: plan.Swept}
	keys := map[string]bool{}
	for i := range plan.Points {
		p := &plan.Points[i]
		st, err := LoadState(dir, p)
		if err != nil {
			return nil, err
		}
		row := Row{Index: p.Index, ID: p.ID, Base: p.Base.Name(), Data: p.Data, Setting: p.Setting, Params: p.Params, Seed: p.Seed,
			Status: st.Status, ExitCode: st.ExitCode, Signal: st.Signal, Error: st.Error, Attempts: st.Attempts, Resumed: st.Resumed != "",
			RunDir: p.RunDir, Log: st.Log, Command: st.Command}
		if row.Status == Running && st.SlurmTask == "" {
			row.Status = Interrupted // a local sweep holds the lock while it runs: its process is gone
		}
		if st.Status == Done {
			m, err := run.ReadResult(filepath.Join(dir, p.RunDir))
			if errors.Is(err, fs.ErrNotExist) {
				// finished once, but its run directory is gone: the next sweep runs it again
				row.Status, row.Error = Pending, "finished before, but its metrics.json is gone: it runs again"
				res.Points = append(res.Points, row)
				continue
			}
			var pe *fs.PathError
			if errors.As(err, &pe) { // not read
				return nil, fmt.Errorf("point %d (%s): %w", p.Index, p.ID, err)
			}
			if err != nil { // not decoded (the error names the file)
				return nil, err
			}
			row.Test, row.Val, row.Epochs, row.Threads = m.Test, m.Val, m.Epochs, m.Threads
			ts, fps := m.TrainSeconds, m.InferenceFPS
			row.TrainSeconds, row.InferenceFPS = &ts, &fps
			for k := range m.Test {
				keys[k] = true
			}
		}
		res.Points = append(res.Points, row)
	}
	res.Metrics = orderMetrics(keys)
	// settings, in plan order
	idx := map[string]int{}
	vals := map[string]map[string][]float64{}
	for i := range plan.Points {
		p := &plan.Points[i]
		g := p.Group()
		j, ok := idx[g]
		if !ok {
			j = len(res.Settings)
			idx[g] = j
			res.Settings = append(res.Settings, SettingResult{Base: p.Base.Name(), Data: p.Data, Setting: p.Setting, Params: p.Params, group: g})
			vals[g] = map[string][]float64{}
		}
		s := &res.Settings[j]
		s.Points++
		row := res.Points[i]
		if row.Status != Done {
			continue
		}
		s.Done++
		for k, v := range row.Test {
			vals[g][k] = append(vals[g][k], v)
		}
		vals[g]["\x00train"] = append(vals[g]["\x00train"], *row.TrainSeconds)
		vals[g]["\x00fps"] = append(vals[g]["\x00fps"], *row.InferenceFPS)
	}
	for i := range res.Settings {
		s := &res.Settings[i]
		if s.Done == 0 {
			continue
		}
		s.Test = map[string]Stat{}
		for k, v := range vals[s.group] {
			switch k {
			case "\x00train":
				st := stat(v)
				s.TrainSeconds = &st
			case "\x00fps":
				st := stat(v)
				s.InferenceFPS = &st
			default:
				s.Test[k] = stat(v)
			}
		}
	}
	// best setting per variant and data source
	bestIdx := map[string]int{}
	var order []string
	for i := range res.Settings {
		s := &res.Settings[i]
		st, ok := s.Test[res.Metric]
		if !ok || math.IsNaN(st.Mean) {
			continue
		}
		k := s.Base + "\x00" + s.Data
		j, seen := bestIdx[k]
		if !seen {
			order = append(order, k)
		}
		if !seen || st.Mean > res.Settings[j].Test[res.Metric].Mean {
			bestIdx[k] = i
		}
	}
	for _, k := range order {
		s := &res.Settings[bestIdx[k]]
		res.Best = append(res.Best, Best{Base: s.Base, Data: s.Data, Setting: s.Setting, Metric: res.Metric, Stat: s.Test[res.Metric]})
	}
	return res, nil
}

func orderMetrics(keys map[string]bool) []string {
	var out []string
	for _, k := range []string{"iou", "precision", "recall", "f1_score", "average_precision", "auroc"} {
		if keys[k] {
			out = append(out, k)
			delete(keys, k)
		}
	}
	var rest []string
	for k := range keys {
		rest = append(rest, k)
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// stat is the mean and the sample standard deviation (n-1), in float64.
func stat(v []float64) Stat {
	s := Stat{N: len(v)}
	if len(v) == 0 {
		return s
	}
	var sum float64
	for _, x := range v {
		sum += x
	}
	s.Mean = sum / float64(len(v))
	if len(v) > 1 {
		var ss float64
		for _, x := range v {
			ss += (x - s.Mean) * (x - s.Mean)
		}
		sd := math.Sqrt(ss / float64(len(v)-1))
		s.Std = &sd
	}
	return s
}

// Write writes sweep.json, sweep.csv, the plots and report.md into dir.
func (r *Results) Write(dir string) error {
	plots, err := r.plot(dir)
	if err != nil {
		return err
	}
	r.Plots = plots
	if err := writeJSON(filepath.Join(dir, "sweep.json"), r); err != nil {
		return err
	}
	b, err := r.CSV()
	if err != nil {
		return err
	}
	if err := nodes.WriteFileAtomic(filepath.Join(dir, "sweep.csv"), b); err != nil {
		return err
	}
	return nodes.WriteFileAtomic(filepath.Join(dir, "report.md"), []byte(r.Markdown()))
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return nodes.WriteFileAtomic(path, append(b, '\n'))
}

func fmtF(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// CSV renders one row per point.
func (r *Results) CSV() ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	head := []string{"index", "id", "variant", "data", "setting", "seed"}
	head = append(head, r.Swept...)
	head = append(head, "status", "exit_code", "signal", "attempts")
	for _, m := range r.Metrics {
		head = append(head, "test_"+m)
	}
	head = append(head, "train_seconds", "inference_fps", "epochs", "run_dir", "error", "command")
	if err := w.Write(head); err != nil {
		return nil, err
	}
	for _, p := range r.Points {
		rec := []string{strconv.Itoa(p.Index), p.ID, p.Base, p.Data, p.Setting, ""}
		if p.Seed != nil {
			rec[5] = strconv.FormatUint(*p.Seed, 10)
		}
		for _, k := range r.Swept {
			v := ""
			for _, kv := range p.Params {
				if kv.Key == k {
					v = kv.Value
				}
			}
			rec = append(rec, v)
		}
		code := ""
		if p.ExitCode != nil {
			code = strconv.Itoa(*p.ExitCode)
		}
		rec = append(rec, string(p.Status), code, p.Signal, strconv.Itoa(p.Attempts))
		for _, m := range r.Metrics {
			v, ok := p.Test[m]
			if ok {
				rec = append(rec, fmtF(v))
			} else {
				rec = append(rec, "")
			}
		}
		opt := func(f *float64) string {
			if f == nil {
				return ""
			}
			return fmtF(*f)
		}
		ep := ""
		if p.Status == Done {
			ep = strconv.Itoa(p.Epochs)
		}
		rec = append(rec, opt(p.TrainSeconds), opt(p.InferenceFPS), ep, p.RunDir, p.Error, p.Command)
		if err := w.Write(rec); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

func (s Stat) text(digits int) string {
	if s.N == 0 {
		return "–"
	}
	f := "%." + strconv.Itoa(digits) + "f"
	if s.Std == nil {
		return fmt.Sprintf(f, s.Mean)
	}
	return fmt.Sprintf(f+" ± "+f, s.Mean, *s.Std)
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// Markdown renders report.md.
func (r *Results) Markdown() string {
	var b strings.Builder
	counts := map[Status]int{}
	for _, p := range r.Points {
		counts[p.Status]++
	}
	fmt.Fprintf(&b, "# Sweep %s\n\n", r.Name)
	fmt.Fprintf(&b, "%d points: %d done, %d failed, %d interrupted, %d pending. Best setting by mean test %s over seeds. ",
		len(r.Points), counts[Done], counts[Failed], counts[Interrupted], counts[Pending], r.Metric)
	fmt.Fprintf(&b, "Values are mean ± sample standard deviation over the seeds of a setting (n = finished points). Runs are in `runs/<id>/` (TensorBoard: `tensorboard --logdir %s`).\n\n", "runs")
	// the data column only when the sweep has data sources
	dataHead, dataSep := "", ""
	dataCell := func(string) string { return "" }
	for _, p := range r.Points {
		if p.Data != "" {
			dataHead, dataSep = " data |", "---|"
			dataCell = func(d string) string { return " " + mdCell(d) + " |" }
			break
		}
	}
	threads := map[int]bool{}
	for _, p := range r.Points {
		if p.Status == Done {
			threads[p.Threads] = true
		}
	}
	if len(threads) > 1 {
		b.WriteString("**Note:** the runs used different LibTorch thread counts (training.threads); the summation order, and so the results of a run, depend on it: compare like with like, or rerun with one --threads.\n\n")
	}
	if len(r.Best) > 0 {
		b.WriteString("## Best setting per variant\n\n| variant |" + dataHead + " setting | test " + r.Metric + " | n |\n|---|" + dataSep + "---|---|---|\n")
		for _, x := range r.Best {
			fmt.Fprintf(&b, "| %s |%s %s | %s | %d |\n", mdCell(x.Base), dataCell(x.Data), mdCell(x.Setting), x.Stat.text(4), x.Stat.N)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Settings\n\n| variant |" + dataHead + " setting | done/points |")
	for _, m := range r.Metrics {
		b.WriteString(" " + m + " |")
	}
	b.WriteString(" train s | FPS |\n|---|" + dataSep + "---|---|")
	b.WriteString(strings.Repeat("---|", len(r.Metrics)+2) + "\n")
	for _, s := range r.Settings {
		fmt.Fprintf(&b, "| %s |%s %s | %d/%d |", mdCell(s.Base), dataCell(s.Data), mdCell(s.Setting), s.Done, s.Points)
		for _, m := range r.Metrics {
			b.WriteString(" " + s.Test[m].text(4) + " |")
		}
		for _, st := range []*Stat{s.TrainSeconds, s.InferenceFPS} {
			if st == nil {
				b.WriteString(" – |")
			} else {
				b.WriteString(" " + st.text(1) + " |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	for _, p := range r.Plots {
		fmt.Fprintf(&b, "![%s](%s)\n\n", p, p)
	}
	b.WriteString("## Points\n\n| # | id | variant |" + dataHead + " setting | seed | status |")
	for _, m := range r.Metrics {
		b.WriteString(" " + m + " |")
	}
	b.WriteString(" train s |\n|---|---|---|" + dataSep + "---|---|---|" + strings.Repeat("---|", len(r.Metrics)+1) + "\n")
	for _, p := range r.Points {
		seed := "–"
		if p.Seed != nil {
			seed = strconv.FormatUint(*p.Seed, 10)
		}
		status := string(p.Status)
		if p.Status == Failed && p.ExitCode != nil {
			status += fmt.Sprintf(" (exit %d)", *p.ExitCode)
		}
		fmt.Fprintf(&b, "| %d | [%s](%s) | %s |%s %s | %s | %s |", p.Index, p.ID, p.RunDir, mdCell(p.Base), dataCell(p.Data), mdCell(p.Setting), seed, status)
		for _, m := range r.Metrics {
			if v, ok := p.Test[m]; ok {
				fmt.Fprintf(&b, " %s |", config.FormatMetric(v))
			} else {
				b.WriteString(" – |")
			}
		}
		if p.TrainSeconds != nil {
			fmt.Fprintf(&b, " %.1f |\n", *p.TrainSeconds)
		} else {
			b.WriteString(" – |\n")
		}
	}
	var failed []Row
	for _, p := range r.Points {
		if p.Status == Failed {
			failed = append(failed, p)
		}
	}
	if len(failed) > 0 {
		b.WriteString("\n## Failed points\n\nRerun them with `spectraclip sweep --out SWEEP --retry-failed`.\n\n")
		for _, p := range failed {
			code := "?"
			if p.ExitCode != nil {
				code = strconv.Itoa(*p.ExitCode)
			}
			if p.Signal != "" {
				code += ", " + p.Signal
			}
			fmt.Fprintf(&b, "- point %d `%s` (exit status %s, log `%s`): %s\n  - `%s`\n", p.Index, p.ID, code, p.Log, mdCell(p.Error), p.Command)
		}
	}
	return b.String()
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
