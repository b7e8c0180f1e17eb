//go:build !linux

package sweep

import "syscall"

func childAttr() *syscall.SysProcAttr { return nil }
