//go:build unix

package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// account is the unprivileged user the server programs run as when this
// process is root (PostgreSQL refuses to run as root).
type account struct {
	name string
	uid  uint32
	gid  uint32
	gids []uint32 // supplementary groups
}

func (a *account) String() string { return fmt.Sprintf("%s (uid %d)", a.name, a.uid) }

// serverAccount returns the account to run the server programs as: nil (this
// process's own user) unless the effective user is root, then "postgres".
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, so the PostgreSQL server must run as the \"postgres\" system user, "+
			"but looking it up failed (create it, or run as an unprivileged user): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid %q of user postgres: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid %q of user postgres: %w", u.Gid, err)
	}
	a := &account{name: u.Username, uid: uint32(uid), gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				a.gids = append(a.gids, uint32(g))
			}
		}
	}
	return a, nil
}

// sysProcAttr returns the attributes for a server program: run as acct when
// set; in a new session when detach (so that a Ctrl-C aimed at this process
// does not reach a server meant to outlive it); and, when dieWithParent, killed
// when this process dies.
func sysProcAttr(acct *account, detach, dieWithParent bool) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setsid: detach}
	if acct != nil {
		attr.Credential = &syscall.Credential{Uid: acct.uid, Gid: acct.gid, Groups: acct.gids}
	}
	if dieWithParent {
		setParentDeathSignal(attr)
	}
	return attr
}

// checkTraversable reports an error naming the first ancestor of dir that
// acct cannot search (execute permission), judged by the mode bits.
func checkTraversable(dir string, acct *account) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		mode := fi.Mode().Perm()
		var can bool
		switch {
		case st.Uid == acct.uid:
			can = mode&0o100 != 0
		case st.Gid == acct.gid || slices.Contains(acct.gids, st.Gid):
			can = mode&0o010 != 0
		default:
			can = mode&0o001 != 0
		}
		if !can {
			return fmt.Errorf("the PostgreSQL server runs as user %s, which cannot enter %s (mode %v, owner uid %d): "+
				"make it traversable (chmod o+x %s) or put the cluster elsewhere", acct, p, mode, st.Uid, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// chownTree makes acct the owner of every file under root that it does not own yet.
func chownTree(root string, acct *account) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == acct.uid && st.Gid == acct.gid {
			return nil
		}
		return os.Lchown(path, int(acct.uid), int(acct.gid))
	})
}

// ownedBy reports whether path exists and belongs to acct.
func ownedBy(path string, acct *account) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == acct.uid
}

// lockFile takes an exclusive flock on path, polling until ctx is done, and
// returns the function that releases it.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for lock %s held by another process: %w", path, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// signalFastShutdown sends the server its shutdown request: SIGINT is PostgreSQL's
// "fast" shutdown (roll back open transactions, disconnect, checkpoint, exit).
func signalFastShutdown(pid int) error {
	return syscall.Kill(pid, syscall.SIGINT)
}

// signalImmediateShutdown ends a server that did not shut down in time: SIGQUIT is
// PostgreSQL's "immediate" shutdown.
func signalImmediateShutdown(pid int) error {
	return syscall.Kill(pid, syscall.SIGQUIT)
}
