//go:build unix && !linux

package pgcluster

import "syscall"

// parentDeathSupported reports whether an ephemeral server is guaranteed to
// die with this process. Only Linux has a parent-death signal; elsewhere an
// ephemeral server outlives a process that is killed without running Stop.
const parentDeathSupported = false

func setParentDeathSignal(*syscall.SysProcAttr) {}
