// Command testsum reads `go test -json` on its standard input and prints what a person needs
// from a whole run: the output of every failed test and of every package that did not build,
// every skipped test with its reason, and a closing line "N passed, N failed, N skipped".
// It exits 1 when anything failed.
//
// With -required PATTERN (a regular expression over "package.TestName"), a skip of a
// matching test counts as a failure: make test passes -required under CI=true for the tests
// of services that make deps installs (Slurm, headless Chromium, a non-loopback address), so
// that "tested on a real Slurm" cannot silently turn into a skip in CI.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

type event struct {
	Action     string
	Package    string
	ImportPath string // build events: "pkg" or "pkg [pkg.test]"
	Test       string
	Output     string
}

type result struct {
	pkg, test string
	action    string
	output    []string
}

func main() {
	required := flag.String("required", "", "regular expression over package.TestName: a skip of a matching test is a failure")
	flag.Parse()
	var req *regexp.Regexp
	if *required != "" {
		var err error
		if req, err = regexp.Compile(*required); err != nil {
			fmt.Fprintf(os.Stderr, "testsum: -required %q: %v\n", *required, err)
			os.Exit(2)
		}
	}
	os.Exit(run(os.Stdin, os.Stdout, req))
}

func run(in io.Reader, out io.Writer, req *regexp.Regexp) int {
	tests := map[string]*result{}   // "pkg.Test/sub" -> result
	pkgOut := map[string][]string{} // package-level output (build errors, panics, timeouts)
	pkgFail := map[string]bool{}    // packages that failed
	var order []string
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			fmt.Fprintln(out, string(line)) // go vet or a build error printed as text
			continue
		}
		if e.Package == "" {
			e.Package, _, _ = strings.Cut(e.ImportPath, " ")
		}
		if e.Test == "" {
			switch e.Action {
			case "output", "build-output":
				pkgOut[e.Package] = append(pkgOut[e.Package], e.Output)
				if strings.HasPrefix(e.Output, "ok  ") || strings.HasPrefix(e.Output, "FAIL\t") || strings.HasPrefix(e.Output, "?   ") {
					fmt.Fprint(out, e.Output)
				}
			case "fail", "build-fail":
				pkgFail[e.Package] = true
			}
			continue
		}
		key := e.Package + "." + e.Test
		r := tests[key]
		if r == nil {
			r = &result{pkg: e.Package, test: e.Test}
			tests[key] = r
			order = append(order, key)
		}
		switch e.Action {
		case "output":
			r.output = append(r.output, e.Output)
		case "pass", "fail", "skip":
			r.action = e.Action
		}
	}
	var passed, failed, skipped int
	var skips, fails []string
	for _, k := range order {
		r := tests[k]
		switch r.action {
		case "pass":
			passed++
		case "fail":
			failed++
			fails = append(fails, k)
		case "skip":
			if top, _, _ := strings.Cut(r.test, "/"); req != nil && req.MatchString(r.pkg+"."+top) {
				failed++
				fails = append(fails, k+" (skipped, but this test's service is installed: a skip is a failure under CI)")
				continue
			}
			skipped++
			skips = append(skips, fmt.Sprintf("%s: %s", k, skipReason(r.output)))
		default: // started, never finished: the package died (panic, timeout)
			failed++
			fails = append(fails, k+" (did not finish)")
		}
	}
	// a package that failed without a failed test (build error, panic in TestMain, timeout)
	var broken []string
	for p := range pkgFail {
		has := false
		for _, k := range fails {
			if strings.HasPrefix(k, p+".") {
				has = true
				break
			}
		}
		if !has {
			broken = append(broken, p)
		}
	}
	sort.Strings(broken)
	for _, k := range fails {
		name := strings.SplitN(k, " ", 2)[0]
		fmt.Fprintf(out, "\n--- FAIL: %s\n", k)
		if r := tests[name]; r != nil {
			for _, l := range r.output {
				fmt.Fprint(out, l)
			}
		}
	}
	for _, p := range broken {
		failed++
		fmt.Fprintf(out, "\n--- FAIL: package %s\n", p)
		for _, l := range pkgOut[p] {
			fmt.Fprint(out, l)
		}
	}
	if len(skips) > 0 {
		fmt.Fprintf(out, "\nskipped (%d):\n", len(skips))
		for _, s := range skips {
			fmt.Fprintf(out, "  %s\n", s)
		}
	}
	fmt.Fprintf(out, "\n%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 {
		return 1
	}
	return 0
}

// skipReason is the message of a skip: the last output line before "--- SKIP", trimmed.
func skipReason(lines []string) string {
	reason := ""
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		reason = t
	}
	if reason == "" {
		return "(no reason given)"
	}
	return reason
}
