// Package procstat reads the process's own memory figures from /proc/self/status.
package procstat

import (
	"os"
	"strconv"
	"strings"
)

// MB returns a VmRSS/VmHWM-style line of /proc/self/status (key with its colon, e.g.
// "VmHWM:") in MB, or 0 where the file or the line is absent.
func MB(key string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
