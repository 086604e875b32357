package proc

import "syscall"

// sysProcAttr has the kernel kill the server when the test process dies, however it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
