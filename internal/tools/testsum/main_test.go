package main

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestSummaryOfRealRun runs `go test -json` on a generated package whose tests pass, fail,
// skip with a reason and skip a required test, and checks the closing line, the listed
// skips and the exit status that testsum gives.
func TestSummaryOfRealRun(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := writeFile(dir+"/"+name, body); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/sample\n\ngo 1.22\n")
	write("s_test.go", `package sample

import "testing"

func TestOK(t *testing.T)       { t.Run("sub", func(t *testing.T) {}) }
func TestBad(t *testing.T)      { t.Log("the value was 3"); t.Fail() }
func TestNoDevice(t *testing.T) { t.Skip("no CUDA device") }
func TestSlurmThing(t *testing.T) { t.Skip("slurmctld did not start") }
`)
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	js, _ := cmd.Output() // the package fails: the exit status is testsum's to give
	for _, c := range []struct {
		req                    string
		wantLine, wantInOutput string
		wantRC                 int
	}{
		{"", "2 passed, 1 failed, 2 skipped", "example.com/sample.TestNoDevice: s_test.go:7: no CUDA device", 1},
		{`\.TestSlurm`, "2 passed, 2 failed, 1 skipped", "TestSlurmThing (skipped, but this test's service is installed", 1},
	} {
		var req *regexp.Regexp
		if c.req != "" {
			req = regexp.MustCompile(c.req)
		}
		var out bytes.Buffer
		rc := run(bytes.NewReader(js), &out, req)
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if last := lines[len(lines)-1]; last != c.wantLine || rc != c.wantRC {
			t.Errorf("required %q: closing line %q, exit %d; want %q, %d\n%s", c.req, last, rc, c.wantLine, c.wantRC, out.String())
		}
		if !strings.Contains(out.String(), c.wantInOutput) || !strings.Contains(out.String(), "the value was 3") {
			t.Errorf("required %q: output lacks %q or the failed test's log:\n%s", c.req, c.wantInOutput, out.String())
		}
	}
}

// TestBuildFailureCounts: a package that does not compile is a failure, with its compiler
// output shown.
func TestBuildFailureCounts(t *testing.T) {
	dir := t.TempDir()
	if err := writeFile(dir+"/go.mod", "module example.com/broken\n\ngo 1.22\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(dir+"/b_test.go", "package broken\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) { undefinedThing() }\n"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	js, _ := cmd.CombinedOutput()
	var out bytes.Buffer
	if rc := run(bytes.NewReader(js), &out, nil); rc != 1 || !strings.Contains(out.String(), "0 passed, 1 failed, 0 skipped") || !strings.Contains(out.String(), "undefinedThing") {
		t.Errorf("exit %d, output:\n%s", rc, out.String())
	}
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o644) }
