package run

// Pipelines are built here from configs that name the built-in node types, so it registers every
// built-in family.
import (
	_ "github.com/spectraclip/spectraclip/nodes/data"
	_ "github.com/spectraclip/spectraclip/nodes/decide"
	_ "github.com/spectraclip/spectraclip/nodes/detect"
	_ "github.com/spectraclip/spectraclip/nodes/loss"
	_ "github.com/spectraclip/spectraclip/nodes/metric"
	_ "github.com/spectraclip/spectraclip/nodes/normalize"
	_ "github.com/spectraclip/spectraclip/nodes/reduce"
)
