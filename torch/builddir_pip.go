//go:build torchpip

package torch

// The C shim built against the project's PyPI torch (make ... TORCH=pip): build-pip/.

/*
#cgo LDFLAGS: -L${SRCDIR}/../build-pip -Wl,-rpath,${SRCDIR}/../build-pip -Wl,-rpath,$ORIGIN/../build-pip
*/
import "C"

// BuildDir is the folder, relative to the repository root, whose libspectraclip_c.so this
// package links.
const BuildDir = "build-pip"
