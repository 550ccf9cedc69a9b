//go:build !unix

package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"syscall"
)

// errUnsupported is returned by Start on systems without the Unix process
// and file-locking primitives the cluster relies on.
var errUnsupported = fmt.Errorf("running a private PostgreSQL cluster is not supported on %s; set MCPAUTH_DATABASE_URL to an existing database: %w",
	runtime.GOOS, errors.ErrUnsupported)

const parentDeathSupported = false

type account struct{ uid, gid uint32 }

func (*account) String() string { return "" }

func serverAccount() (*account, error)                      { return nil, errUnsupported }
func sysProcAttr(*account, bool, bool) *syscall.SysProcAttr { return nil }
func checkTraversable(string, *account) error               { return errUnsupported }
func chownTree(string, *account) error                      { return errUnsupported }
func ownedBy(string, *account) bool                         { return false }
func lockFile(context.Context, string) (func(), error)      { return nil, errUnsupported }
func processAlive(int) bool                                 { return false }
func signalFastShutdown(int) error                          { return errUnsupported }
func signalImmediateShutdown(int) error                     { return errUnsupported }
