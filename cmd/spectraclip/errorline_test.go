package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// An unknown command is one error line carrying the suggestion; export-detector refuses a
// non-positive --image-size and writes nothing.
func TestUnknownCommandAndBadImageSizeAreOneLine(t *testing.T) {
	var out, errOut bytes.Buffer
	root := NewRootCmd(&out, &errOut)
	root.SetArgs([]string{"trian"})
	err := root.Execute()
	if err == nil {
		t.Fatal("trian: no error")
	}
	line := errorLine(root, err)
	if strings.Contains(line, "\n") || !strings.Contains(line, `"trian"`) || !strings.Contains(line, "did you mean train") || errOut.Len() != 0 {
		t.Errorf("error line %q, stderr %q", line, errOut.String())
	}
	for _, size := range []string{"-5", "0"} {
		det := filepath.Join(t.TempDir(), "det.pt")
		_, err := runCLI(t, "export-detector", "--builtin", "--image-size", size, "--out", det)
		if err == nil || !strings.Contains(err.Error(), "--image-size "+size) {
			t.Errorf("--image-size %s: %v", size, err)
		}
		if _, err := os.Stat(det); !os.IsNotExist(err) {
			t.Errorf("--image-size %s wrote %s", size, det)
		}
	}
}

// A full disk reached through any writer (here the TensorBoard writer's wrapping, the one writer
// that says only ENOSPC's own words) reads "the disk is full" once, with the file still named;
// another write error gets no such words, and a line that already says it is left alone.
func TestErrorLineSaysTheDiskIsFull(t *testing.T) {
	root := NewRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	ev := "/runs/x/tensorboard/events.out.tfevents.1"
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("train: tboard: write %s: %w", ev, &os.PathError{Op: "write", Path: ev, Err: syscall.ENOSPC}), true},
		{fmt.Errorf("tboard: write %s: %w", ev, &os.PathError{Op: "write", Path: ev, Err: syscall.EDQUOT}), true},
		{fmt.Errorf("tboard: write %s: %w", ev, &os.PathError{Op: "write", Path: ev, Err: syscall.EIO}), false},
	} {
		line := errorLine(root, tc.err)
		if got := strings.Count(line, "disk is full"); (got == 1) != tc.want || got > 1 || !strings.Contains(line, ev) {
			t.Errorf("%v: error line %q", tc.err, line)
		}
	}
	already := fmt.Errorf("%s: the disk is full (%w)", ev, syscall.ENOSPC)
	if line := errorLine(root, already); strings.Count(line, "disk is full") != 1 {
		t.Errorf("error line %q says it twice", line)
	}
}
