package detect

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// builtinPackages caches the compiled built-in detectors of this test binary (about 40 s
// each on 2 cores): the tests that need the same size and largest batch share one package.
var builtinPackages struct {
	sync.Mutex
	dir string
	ts  map[string][2]string
}

// cachedBuiltinAOTI is exportBuiltinAOTI, compiled once per (size, maxBatch) per test binary.
func cachedBuiltinAOTI(t testing.TB, size, maxBatch int) (ts, pt2 string) {
	t.Helper()
	c := &builtinPackages
	c.Lock()
	defer c.Unlock()
	key := fmt.Sprintf("%d-%d", size, maxBatch)
	if p, ok := c.ts[key]; ok {
		return p[0], p[1]
	}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "spectraclip-detect-test-")
		if err != nil {
			t.Fatal(err)
		}
		c.dir, c.ts = d, map[string][2]string{}
	}
	sub, err := os.MkdirTemp(c.dir, key+"-")
	if err != nil {
		t.Fatal(err)
	}
	ts, pt2 = exportBuiltinAOTI(t, sub, size, maxBatch)
	c.ts[key] = [2]string{ts, pt2}
	return ts, pt2
}

func TestMain(m *testing.M) {
	code := m.Run()
	if d := builtinPackages.dir; d != "" {
		_ = os.RemoveAll(d)
	}
	os.Exit(code)
}
