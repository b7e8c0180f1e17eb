// Package procstat reads the process's own memory figures (/proc/self/status) and CPU time.
package procstat

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// CPUSeconds is the CPU time (user + system) the process has used so far, all its threads
// (getrusage RUSAGE_SELF), or 0 where that fails.
func CPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
