package bench

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// noHookEnv makes TestMain skip ChildMain, for TestLinkingBenchDoesNotMakeAChild.
const noHookEnv = "SPECTRACLIP_BENCH_TEST_NO_HOOK"

// TestMain is this test binary's ChildMain hook: the isolated benches of these tests re-run
// the test binary as their children.
func TestMain(m *testing.M) {
	if os.Getenv(noHookEnv) == "" {
		if code, isChild := ChildMain(); isChild {
			os.Exit(code)
		}
	}
	os.Exit(m.Run())
}

// childNotHookedMarker is what TestChildEnvIgnoredWithoutHook prints.
const childNotHookedMarker = "no bench child: the test runner ran"

// TestChildEnvIgnoredWithoutHook is a helper, not a test: in a process started by
// TestLinkingBenchDoesNotMakeAChild it checks that nothing consumed the child's variable.
func TestChildEnvIgnoredWithoutHook(t *testing.T) {
	if os.Getenv(noHookEnv) == "" {
		t.Skip("run by TestLinkingBenchDoesNotMakeAChild")
	}
	if _, ok := os.LookupEnv(childEnv); !ok {
		t.Fatalf("%s was consumed before the tests ran", childEnv)
	}
	os.Stdout.WriteString(childNotHookedMarker + "\n")
}

// A binary that links this package but does not call ChildMain is not a bench child when
// started with the child's variable (before, the package's init ran the child and exited
// before main): this test binary, re-run with the variable set and the hook off, runs its
// test runner. The variable's value is not valid options, which the old init answered with
// exit status 2.
func TestLinkingBenchDoesNotMakeAChild(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestChildEnvIgnoredWithoutHook$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=not options", noHookEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), childNotHookedMarker) {
		t.Fatalf("re-run with %s set and no ChildMain: %v\n%s", childEnv, err, out)
	}
}

// ChildMain does nothing without the variable; with it, it runs the child (here: refuses
// its unreadable options) and consumes the variable.
func TestChildMain(t *testing.T) {
	if code, isChild := ChildMain(); isChild || code != 0 {
		t.Fatalf("without %s: code %d, child %v", childEnv, code, isChild)
	}
	t.Setenv(childEnv, "not options")
	if code, isChild := ChildMain(); !isChild || code != 2 {
		t.Fatalf("with unreadable options: code %d, child %v", code, isChild)
	}
	if v, ok := os.LookupEnv(childEnv); ok {
		t.Fatalf("%s=%q left set in the child", childEnv, v)
	}
}

// A process started as a child that never called ChildMain refuses to start children of
// its own (they would re-run it, and so on without end).
func TestIsolatedRefusedInUnhookedChild(t *testing.T) {
	t.Setenv(childEnv, "{}")
	_, err := Run(Options{Variants: []string{"pca"}, Device: "cpu", Batch: 1, H: 8, W: 8, Threads: 1, Iters: 1, Isolate: true})
	if err == nil || !strings.Contains(err.Error(), "bench.ChildMain") {
		t.Fatalf("isolated bench in an unhooked child: %v", err)
	}
}
