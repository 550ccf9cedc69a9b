package pgcluster

import "syscall"

// parentDeathSupported reports whether an ephemeral server is guaranteed to
// die with this process.
const parentDeathSupported = true

// setParentDeathSignal asks the kernel to send the server SIGQUIT (PostgreSQL's
// immediate shutdown) when the thread that started it exits; Start keeps that
// thread alive for as long as the server runs. Go sets it after switching
// credentials, which would otherwise clear it.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGQUIT
}
