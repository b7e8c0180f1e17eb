//go:build !linux

// Package procattr starts child processes that die with the process that starts them.
package procattr

import "syscall"

// DieWithParent: no parent-death signal outside Linux.
func DieWithParent() *syscall.SysProcAttr { return nil }
