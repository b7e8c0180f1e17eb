package dataset

import "syscall"

// physicalMemory returns the machine's RAM in bytes (0 when unknown).
func physicalMemory() int64 {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// addressSpaceLimit returns the soft RLIMIT_AS (ulimit -v) in bytes, 0 when unlimited.
func addressSpaceLimit() int64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_AS, &rl) != nil || rl.Cur > 1<<62 {
		return 0
	}
	return int64(rl.Cur)
}
