//go:build !torchpip

package torch

// The C shim built against the system's LibTorch (Debian's libtorch-dev 1.13 by default):
// make csrc builds it into build/. The tag torchpip (make ... TORCH=pip) links build-pip/,
// the shim built against the project's PyPI torch instead; the two never mix in one binary.

/*
#cgo LDFLAGS: -L${SRCDIR}/../build -Wl,-rpath,${SRCDIR}/../build -Wl,-rpath,$ORIGIN/../build
*/
import "C"

// BuildDir is the folder, relative to the repository root, whose libspectraclip_c.so this
// package links.
const BuildDir = "build"
