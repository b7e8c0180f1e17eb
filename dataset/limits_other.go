//go:build !linux

package dataset

// physicalMemory is unknown off Linux: the 16 GiB default applies.
func physicalMemory() int64 { return 0 }

// addressSpaceLimit is not consulted off Linux.
func addressSpaceLimit() int64 { return 0 }
