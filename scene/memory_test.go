package scene

import (
	"context"
	"slices"
	"testing"

	"github.com/spectraclip/spectraclip/scene/scenespec"

	"github.com/spectraclip/spectraclip/dataset"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/torch"
)

// A loaded scene's whole-scene batch is a tensor over the scene's own memory, not a copy of
// it: the pipeline reads the cube where it lies, so that holding and running a scene costs
// one cube, not two (#25 item 5: train --scene on a 400 MB cube). Before: the batch tensor
// was a copy (a second cube-sized allocation per pass).
func TestWholeSceneBatchViewsTheCube(t *testing.T) {
	path := genScene(t, t.TempDir(), 32, 24, 7, 4, 3)
	cube, gt, err := Load(scenespec.Spec{Path: path, CubeVar: "cube", GTVar: "gt"})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(cube.Data)
	ds, err := dataset.WholeScene(path, cube, gt, dataset.NaNError)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ds.NewLoader("train", dataset.LoaderOptions{BatchSize: 1, Prefetch: -1})
	if err != nil {
		t.Fatal(err)
	}
	for pass := 0; pass < 2; pass++ {
		it := l.Epoch(context.Background(), pass)
		b, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		s := torch.NewScope()
		batch, err := datanode.ToBatch(s, b, torch.CPU, nil)
		if err != nil {
			t.Fatal(err)
		}
		x := batch[datanode.KeyCube].(*torch.Tensor)
		if got := x.Shape(); !slices.Equal(got, []int64{1, 32, 24, 7}) {
			t.Fatalf("batch shape %v", got)
		}
		v, err := torch.CPUView[float32](x)
		if err != nil {
			t.Fatal(err)
		}
		if &v[0] != &cube.Data[0] {
			t.Fatalf("pass %d: the batch tensor is a copy of the scene, not a view of it", pass)
		}
		if !slices.Equal(v, want) {
			t.Fatalf("pass %d: the batch does not hold the scene's values", pass)
		}
		l.Release(b)
		s.Close()
		it.Close()
	}
	// the scene outlives the batches' tensors
	if !slices.Equal(cube.Data, want) {
		t.Fatal("the scene's values changed")
	}
}
