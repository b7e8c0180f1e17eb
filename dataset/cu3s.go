package dataset

import (
	"errors"
	"fmt"
)

// ErrCU3S marks a Cubert .cu3s session file, which this package cannot read.
var ErrCU3S = errors.New("cu3s session files need the proprietary Cubert cuvis SDK")

// cu3sError explains what to do with a .cu3s file instead of failing on its bytes.
func cu3sError(path string) error {
	return fmt.Errorf("%s: %w, which has no Go binding and is not available here; export the measurements to ENVI "+
		"(cuvis Python SDK: cuvis.EnviExporter with processing mode Reflectance, or File > Export > ENVI in CUVIS app), "+
		"then list the .hdr files as frames in a dataset.yaml, or open a single .hdr with OpenScene", path, ErrCU3S)
}

// ReadCU3S always fails with an error wrapping ErrCU3S that says how to export the session to
// ENVI; it exists so that callers that dispatch on extension give that advice.
func ReadCU3S(path string) (*Cube, error) { return nil, cu3sError(path) }
