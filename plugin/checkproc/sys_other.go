//go:build !linux

package checkproc

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
