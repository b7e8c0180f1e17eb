package report

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
)

// KV is one row of a report's key/value summary (run name, dataset, seed, best epoch, …).
type KV struct{ Key, Value string }

// Row is one row of a metric table: a name (e.g. a split or an epoch) and one value per column.
type Row struct {
	Name   string
	Values []float64
}

// Table is a metric table of rows × columns. Digits is the number of decimals (0 means 4).
type Table struct {
	Title     string
	RowHeader string // header of the name column; "" means "name"
	Columns   []string
	Rows      []Row
	Digits    int
}

// ImageLink embeds an image by a path relative to the markdown file, so the report directory
// can be moved or archived as a whole.
type ImageLink struct {
	Caption string
	Path    string
}

// Report is the content of a markdown report.
type Report struct {
	Title   string
	Summary []KV
	Notes   []string // free paragraphs under the summary
	Tables  []Table
	Images  []ImageLink
}

// WriteMarkdown renders r as GitHub-flavoured markdown at path. Tables whose rows do not match
// their columns and absolute image paths are errors, not silently malformed output.
func WriteMarkdown(path string, r Report) error {
	s, err := RenderMarkdown(r)
	if err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	return writeFileAtomic(path, []byte(s))
}

// RenderMarkdown returns the markdown text of r (see WriteMarkdown).
func RenderMarkdown(r Report) (string, error) {
	var b strings.Builder
	title := r.Title
	if title == "" {
		title = "Report"
	}
	fmt.Fprintf(&b, "# %s\n\n", cell(title))
	if len(r.Summary) > 0 {
		b.WriteString("| key | value |\n|---|---|\n")
		for _, kv := range r.Summary {
			fmt.Fprintf(&b, "| %s | %s |\n", cell(kv.Key), cell(kv.Value))
		}
		b.WriteString("\n")
	}
	for _, n := range r.Notes {
		b.WriteString(strings.TrimSpace(n) + "\n\n")
	}
	for ti, t := range r.Tables {
		if len(t.Columns) == 0 {
			return "", fmt.Errorf("report: table %d (%q) has no columns", ti, t.Title)
		}
		if t.Title != "" {
			fmt.Fprintf(&b, "## %s\n\n", cell(t.Title))
		}
		rh := t.RowHeader
		if rh == "" {
			rh = "name"
		}
		b.WriteString("| " + cell(rh))
		for _, c := range t.Columns {
			b.WriteString(" | " + cell(c))
		}
		b.WriteString(" |\n|---" + strings.Repeat("|---:", len(t.Columns)) + "|\n")
		digits := t.Digits
		if digits <= 0 {
			digits = 4
		}
		for ri, row := range t.Rows {
			if len(row.Values) != len(t.Columns) {
				return "", fmt.Errorf("report: table %d (%q) row %d (%q) has %d values for %d columns", ti, t.Title, ri, row.Name, len(row.Values), len(t.Columns))
			}
			b.WriteString("| " + cell(row.Name))
			for _, v := range row.Values {
				b.WriteString(" | " + formatValue(v, digits))
			}
			b.WriteString(" |\n")
		}
		b.WriteString("\n")
	}
	if len(r.Images) > 0 {
		b.WriteString("## Figures\n\n")
		for i, im := range r.Images {
			if im.Path == "" {
				return "", fmt.Errorf("report: image %d (%q) has an empty path", i, im.Caption)
			}
			if filepath.IsAbs(im.Path) {
				return "", fmt.Errorf("report: image %d path %q must be relative to the report", i, im.Path)
			}
			link := strings.ReplaceAll(filepath.ToSlash(im.Path), " ", "%20")
			alt := strings.NewReplacer("[", "(", "]", ")", "\n", " ").Replace(im.Caption)
			fmt.Fprintf(&b, "![%s](%s)\n\n", alt, link)
			if im.Caption != "" {
				fmt.Fprintf(&b, "*%s*\n\n", cell(im.Caption))
			}
		}
	}
	return b.String(), nil
}

func formatValue(v float64, digits int) string {
	switch {
	case math.IsNaN(v):
		return "undefined" // a metric with nothing to measure (e.g. AUROC without anomalies)
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return fmt.Sprintf("%.*f", digits, v)
}

// cell makes s safe inside a table cell or heading: pipes escaped, line breaks flattened.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\r\n", " ", "\n", " ").Replace(s)
}
