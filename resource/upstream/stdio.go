package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// How a stdio upstream is stopped (MCP 2025-11-25 "Lifecycle", stdio
// shutdown): close its stdin, wait, then SIGTERM, wait, then SIGKILL — to its
// process group, so that a wrapper such as npx takes its children along.
const (
	stopGrace = 5 * time.Second
	termGrace = 2 * time.Second
)

// lineSlack is what the transport's line cap adds to MaxResultBytes: a
// result a little over the cap is decoded and refused with a clean error
// while the connection stays up; a line over cap+slack breaks the
// connection, and the process is restarted.
const lineSlack = 1 << 20

// connectStdio starts the process and connects to it over its stdin and
// stdout (newline-delimited JSON-RPC). Its stderr goes to the log.
func (u *upstream) connectStdio(ctx context.Context, client *mcp.Client) (*conn, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:        u.cfg.Command,
		Args:        append([]string{u.cfg.Command}, u.cfg.Args...),
		Env:         append([]string{}, u.cfg.Env...), // never mcpauth's own environment
		Dir:         u.cfg.Dir,
		Stdin:       inR,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = cmd.Start()
	// The child holds its ends now; ours are closed so that EOF means the
	// process (and every child it gave them to) is gone.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", u.cfg.Command, err)
	}
	pid := cmd.Process.Pid
	u.log.Info("upstream process started", "pid", pid)

	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		u.log.Info("upstream process exited", "pid", pid, "status", exitStatus(err))
		close(exited)
	}()
	go u.logStderr(errR)

	stop := func() {
		// Closing stdin asks the server to exit; then signals.
		inW.Close()
		select {
		case <-exited:
		case <-time.After(stopGrace):
			syscall.Kill(-pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(termGrace):
				syscall.Kill(-pid, syscall.SIGKILL)
				<-exited
			}
		}
		// The leader is gone (it exited, crashed or was killed); its
		// children (npx → sh → node) may not be.
		stopGroup(pid)
		outR.Close()
	}
	session, err := client.Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW, MaxLineLength: u.cfg.MaxResultBytes + lineSlack}, nil)
	if err != nil {
		stop()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-exited:
		case <-sessionDone(session):
		}
		close(done)
	}()
	return &conn{
		session: session,
		done:    done,
		close: func() {
			stop()
			session.Close()
		},
	}, nil
}

// stopGroup ends what is left of process group pgid once its leader has
// exited: SIGTERM, then SIGKILL to whatever still runs after termGrace.
func stopGroup(pgid int) {
	if syscall.Kill(-pgid, 0) != nil {
		return // nothing left
	}
	syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(termGrace)
	for time.Now().Before(deadline) {
		if syscall.Kill(-pgid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// sessionDone is closed when the session's connection is gone.
func sessionDone(s *mcp.ClientSession) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		s.Wait()
		close(ch)
	}()
	return ch
}

// logStderr copies the process's stderr to the log, a line at a time, each
// cut at 1 KiB.
func (u *upstream) logStderr(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		u.log.Info("upstream stderr", "line", truncate(sc.Text(), 1024))
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		// A line longer than the buffer: drain the rest unlogged, so the
		// process never blocks on a full stderr pipe.
		buf := make([]byte, 32<<10)
		for {
			if _, err := r.Read(buf); err != nil {
				return
			}
		}
	}
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit 0"
	case errors.As(err, &ee):
		return ee.ProcessState.String()
	default:
		return err.Error()
	}
}
