//go:build !linux

package proc

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; elsewhere a test that
// panics on its timeout may leave its servers running.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
