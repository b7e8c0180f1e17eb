package scene

import (
	"fmt"

	datanode "github.com/spectraclip/spectraclip/nodes/data"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/scene/scenespec"
)

// MaxWholeScenePixels is the largest scene the "auto" split runs whole (4 Mi pixels, e.g.
// 2048×2048); larger captures are cut into spatial tiles.
var MaxWholeScenePixels = 4 << 20

// Load reads the cube and its ground truth; a scene without ground truth is an error (there
// is nothing to train or evaluate against).
func Load(s scenespec.Spec) (*dataset.Cube, *dataset.LabelImage, error) {
	cube, gt, err := dataset.LoadScene(s.Path, dataset.SceneOptions{CubeVar: s.CubeVar, GTVar: s.GTVar, GroundTruth: s.MaskPath})
	if err != nil {
		return nil, nil, err
	}
	if gt == nil {
		return nil, nil, fmt.Errorf("scene %s: no ground truth; give a mask file (data.scene.mask_path, --mask) or the variable that holds it (gt_var)", s.Path)
	}
	if constantCube(cube.Data) {
		return nil, nil, fmt.Errorf("scene %s: the cube is constant (every value is %v): no pixel differs from another, so there is nothing to detect and no gradient to train on", s.Path, cube.Data[0])
	}
	// the cube lives in a CPU tensor: a whole-scene batch is a view of it, not a second copy
	if err := datanode.Hold(cube); err != nil {
		return nil, nil, fmt.Errorf("scene %s: %w", s.Path, err)
	}
	return cube, gt, nil
}

// constantCube reports whether every value of a non-empty cube is the same.
func constantCube(v []float32) bool {
	if len(v) == 0 {
		return false
	}
	for _, x := range v[1:] {
		if x != v[0] {
			return false
		}
	}
	return true
}
