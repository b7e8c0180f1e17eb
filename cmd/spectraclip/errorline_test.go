package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
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
		_, err := run(t, "export-detector", "--builtin", "--image-size", size, "--out", det)
		if err == nil || !strings.Contains(err.Error(), "--image-size "+size) {
			t.Errorf("--image-size %s: %v", size, err)
		}
		if _, err := os.Stat(det); !os.IsNotExist(err) {
			t.Errorf("--image-size %s wrote %s", size, det)
		}
	}
}
