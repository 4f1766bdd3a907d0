package checkproc

import "syscall"

// sysProcAttr has the kernel kill the verifier when the daemon dies, so
// that no verifier outlives the process that would read its answers.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
