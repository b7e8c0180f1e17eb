package trainer

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxConfigBytes bounds a config file read into memory.
const maxConfigBytes = 16 << 20

// checkRegular fails unless path (links followed) is a regular file: a FIFO blocks a reader
// forever and a device never ends. what prefixes the error ("config", ...).
func checkRegular(path, what string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return regularInfo(st, path, what)
}

func regularInfo(st fs.FileInfo, path, what string) error {
	m := st.Mode()
	if m.IsRegular() {
		return nil
	}
	kind := "not a regular file"
	switch {
	case m.IsDir():
		kind = "a directory"
	case m&fs.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	case m&fs.ModeCharDevice != 0:
		kind = "a character device"
	case m&fs.ModeDevice != 0:
		kind = "a block device"
	}
	return fmt.Errorf("%s %s: is %s, not a regular file", what, path, kind)
}

// readRegular reads a whole regular file of at most maxBytes bytes.
func readRegular(path, what string, maxBytes int64) ([]byte, error) {
	if err := checkRegular(path, what); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat() // the path may have been replaced in between
	if err == nil {
		err = regularInfo(st, path, what)
	}
	if err != nil {
		return nil, err
	}
	if st.Size() > maxBytes {
		return nil, fmt.Errorf("%s %s: %d bytes, more than the %d a config may have", what, path, st.Size(), maxBytes)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return b, nil
}
