package trainer

import (
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spectraclip/spectraclip/dataset"
)

// ClassMeans returns the mean spectrum of each class over up to maxFrames training frames.
func ClassMeans(ds *dataset.Dataset, maxFrames int) (map[string][]float64, error) {
	ids, err := ds.Split("train")
	if err != nil {
		return nil, err
	}
	if len(ids) > maxFrames {
		ids = ids[:maxFrames]
	}
	names := map[int32]string{}
	for _, c := range ds.Categories {
		names[int32(c.ID)] = c.Name
	}
	sums := map[int32][]float64{}
	counts := map[int32]int{}
	for _, id := range ids {
		smp, err := ds.Load(id)
		if err != nil {
			return nil, err
		}
		if smp.ClassIDs == nil {
			return nil, fmt.Errorf("dataset %s has no labels", ds.Name)
		}
		for p, cls := range smp.ClassIDs {
			if sums[cls] == nil {
				sums[cls] = make([]float64, smp.C)
			}
			row := smp.Cube[p*smp.C : (p+1)*smp.C]
			for b, v := range row {
				sums[cls][b] += float64(v)
			}
			counts[cls]++
		}
	}
	out := map[string][]float64{}
	for cls, s := range sums {
		name := names[cls]
		if name == "" {
			name = fmt.Sprintf("class %d", cls)
		}
		for b := range s {
			s[b] /= float64(counts[cls])
		}
		out[name] = s
	}
	return out, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// orQuiet is log, or a logger that discards everything when log is nil.
func orQuiet(log *logrus.Logger) *logrus.Logger {
	if log == nil {
		log = logrus.New()
		log.SetOutput(io.Discard)
	}
	return log
}
