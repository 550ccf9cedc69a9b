// Package pgcluster starts and stops a private PostgreSQL cluster from the
// machine's PostgreSQL server programs (initdb, pg_ctl, postgres): the
// persistent one `mcpauth dev` keeps under ./.mcpauth/ and reuses while it
// runs, and the throwaway ones the tests run in a temporary directory.
//
// A cluster directory holds the data directory ("data"), the server log
// ("postgres.log") and a lock file. The server listens on 127.0.0.1 only, on
// a port chosen when the cluster is initialised and kept in its configuration
// (data/mcpauth.conf, included from postgresql.conf); it has no Unix socket.
// When this process runs as root, the server programs run as the "postgres"
// system user, because PostgreSQL refuses to run as root. It needs
// PostgreSQL 10 or later.
//
// It imports only the standard library and nothing of ours, no net/http, and
// never reads the environment: callers pass everything in Options.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	superuser   = "postgres"
	dataSubdir  = "data"
	logName     = "postgres.log"
	lockName    = "lock"
	confName    = "mcpauth.conf" // in the data directory
	includeLine = "include_if_exists = '" + confName + "'"

	// readyTimeout bounds the wait for a server to accept connections.
	readyTimeout = 60 * time.Second
)

// Options configures Start.
type Options struct {
	// Dir is the cluster root, created if missing. The data directory, the
	// server log and the lock file live inside.
	Dir string
	// BinDir, when set, is the only directory searched for initdb, pg_ctl
	// and postgres; otherwise BinDir() finds them.
	BinDir string
	// Port is the TCP port on 127.0.0.1. 0 keeps the port the cluster already
	// has, or, when it is first initialised, chooses a free one. A server
	// that is already running keeps its port.
	Port int
	// Password is the superuser ("postgres") password set when the cluster is
	// initialised (scram-sha-256). "" means trust authentication on loopback:
	// any local user can connect as superuser, so only throwaway test
	// clusters may use it. It is not changed on an existing cluster.
	Password string
	// Ephemeral is for test clusters: the server runs as a direct child of
	// this process and, on Linux, is shut down by the kernel when this process
	// dies, even when it is killed; durability is traded for speed (fsync,
	// synchronous_commit and full_page_writes off).
	Ephemeral bool
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// Cluster is a PostgreSQL cluster whose server accepts connections.
type Cluster struct {
	dir, dataDir, logPath, binDir string
	password                      string
	ephemeral                     bool
	acct                          *account // nil: run the server as this process's user
	logger                        *slog.Logger

	port    int
	started bool

	mu     sync.Mutex
	child  *exec.Cmd     // the server, when this process started it as a direct child
	exited chan struct{} // closed once child has exited
}

// Start makes sure a server for opts.Dir is running and accepts connections.
// It initialises the cluster if Dir holds none; reuses a server that is
// already running on it (then Started reports false); and otherwise starts
// one: with pg_ctl, detached, for a persistent cluster, or as a direct child
// for an Ephemeral one. Concurrent Start calls on one Dir, from any process,
// are serialised with a lock file, so only one initialises or starts it.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start PostgreSQL cluster in %s: %w", opts.Dir, err)
	}
	return c, nil
}

func start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("no cluster directory given")
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("port %d out of range", opts.Port)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve directory: %w", err)
	}
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		dir:       dir,
		dataDir:   filepath.Join(dir, dataSubdir),
		logPath:   filepath.Join(dir, logName),
		binDir:    binDir,
		password:  opts.Password,
		ephemeral: opts.Ephemeral,
		acct:      acct,
		logger:    logger,
	}
	if err := c.prepareDir(); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, lockName))
	if err != nil {
		return nil, err
	}
	defer unlock()

	reused, err := c.reuseRunning(ctx)
	if err != nil {
		return nil, err
	}
	if reused {
		return c, nil
	}

	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("inspect data directory: %w", err)
	} else if acct != nil && !ownedBy(c.dataDir, acct) {
		if err := chownTree(c.dataDir, acct); err != nil {
			return nil, fmt.Errorf("give data directory to user %s: %w", acct, err)
		}
	}
	if err := c.configure(opts.Port); err != nil {
		return nil, err
	}
	if c.ephemeral {
		err = c.startChild(ctx)
	} else {
		err = c.startDetached(ctx)
	}
	if err != nil {
		return nil, err
	}
	c.started = true
	c.logger.InfoContext(ctx, "started PostgreSQL server", "dir", c.dir, "port", c.port, "ephemeral", c.ephemeral)
	return c, nil
}

// URL returns the superuser's connection URL for database:
// postgres://postgres[:password]@127.0.0.1:PORT/DATABASE?sslmode=disable.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	if c.password != "" {
		u.User = url.UserPassword(superuser, c.password)
	}
	return u.String()
}

// Port returns the server's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// Started reports whether Start started the server, rather than finding it
// running.
func (c *Cluster) Started() bool { return c.started }

// Stop shuts the server down (PostgreSQL's fast shutdown: open transactions
// are rolled back and clients disconnected) and waits until it is down,
// whether or not this Cluster started it; callers decide whether to call it.
// Stopping a server that is not running returns nil. If ctx ends first, the
// server is sent an immediate shutdown and Stop returns an error.
func (c *Cluster) Stop(ctx context.Context) error {
	if err := c.stop(ctx); err != nil {
		return fmt.Errorf("stop PostgreSQL server in %s: %w", c.dir, err)
	}
	c.logger.InfoContext(ctx, "stopped PostgreSQL server", "dir", c.dir, "port", c.port)
	return nil
}

func (c *Cluster) stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()

	if c.child != nil {
		select {
		case <-c.exited:
			return nil
		default:
		}
		pid := c.child.Process.Pid
		if err := signalFastShutdown(pid); err != nil {
			return fmt.Errorf("signal server (pid %d): %w", pid, err)
		}
		select {
		case <-c.exited:
			return nil
		case <-ctx.Done():
			_ = signalImmediateShutdown(pid)
			return fmt.Errorf("wait for fast shutdown, sent immediate shutdown: %w", context.Cause(ctx))
		}
	}

	pid, _, _, ok := c.runningServer()
	if !ok {
		return nil
	}
	if err := signalFastShutdown(pid); err != nil {
		if !processAlive(pid) {
			return nil
		}
		return fmt.Errorf("signal server (pid %d): %w", pid, err)
	}
	// The server removes postmaster.pid as the last step of its shutdown.
	// Watch the file as well as the process: a server that is not our child
	// may be reparented to us (as PID 1 in a container) and linger as a zombie.
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	for {
		if _, err := os.Stat(pidFile); errors.Is(err, fs.ErrNotExist) || !processAlive(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			_ = signalImmediateShutdown(pid)
			return fmt.Errorf("wait for fast shutdown, sent immediate shutdown: %w", context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Running reports whether a server is running on the cluster in dir, and
// its port. It does not check that the server accepts connections.
func Running(dir string) (port int, ok bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, false
	}
	c := &Cluster{dataDir: filepath.Join(abs, dataSubdir)}
	_, port, _, ok = c.runningServer()
	return port, ok
}

// prepareDir creates the cluster directory and, as root, hands it to the
// server's account after checking that the account can reach it.
func (c *Cluster) prepareDir() error {
	if err := os.MkdirAll(filepath.Dir(c.dir), 0o755); err != nil {
		return fmt.Errorf("create parent directory: %w", err)
	}
	if err := os.Mkdir(c.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create cluster directory: %w", err)
	}
	if c.acct == nil {
		return nil
	}
	if err := checkTraversable(c.dir, c.acct); err != nil {
		return err
	}
	if err := os.Lchown(c.dir, int(c.acct.uid), int(c.acct.gid)); err != nil {
		return fmt.Errorf("give cluster directory to user %s: %w", c.acct, err)
	}
	return nil
}

// reuseRunning reports whether a server is already running on the data
// directory and, if so, waits until it accepts connections and adopts it.
func (c *Cluster) reuseRunning(ctx context.Context) (bool, error) {
	pid, port, status, ok := c.runningServer()
	if !ok {
		return false, nil
	}
	if status == "stopping" {
		// Let it finish, then start a fresh one.
		if err := c.stop(ctx); err != nil {
			return false, fmt.Errorf("wait for the stopping server (pid %d): %w", pid, err)
		}
		return false, nil
	}
	timeout := readyTimeout
	if status == "ready" || status == "standby" {
		// It should answer at once; if nothing does, postmaster.pid is
		// stale and its pid now belongs to another process.
		timeout = 3 * time.Second
	}
	if err := c.waitReady(ctx, port, timeout, nil); err != nil {
		return false, c.withLog(fmt.Errorf("a server (pid %d, per %s) should be running but does not answer on port %d; "+
			"if no PostgreSQL runs on this directory, remove that file: %w",
			pid, filepath.Join(c.dataDir, "postmaster.pid"), port, err))
	}
	c.port = port
	c.logger.InfoContext(ctx, "reusing running PostgreSQL server", "dir", c.dir, "port", port, "pid", pid)
	return true, nil
}

// runningServer reads postmaster.pid and reports the server's pid, port and
// status when its process is alive. The file's lines are: pid, data
// directory, start time, port, socket directory, listen address, shared
// memory key, status (PostgreSQL ≥ 10, src/include/utils/pidfile.h).
func (c *Cluster) runningServer() (pid, port int, status string, ok bool) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, 0, "", false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, 0, "", false
	}
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return 0, 0, "", false
	}
	port, err = strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		return 0, 0, "", false
	}
	if len(lines) >= 8 {
		status = strings.TrimSpace(lines[7])
	}
	return pid, port, status, true
}

// initdb creates the cluster: superuser "postgres", UTF8, C locale.
func (c *Cluster) initdb(ctx context.Context) error {
	c.logger.InfoContext(ctx, "initialising PostgreSQL cluster", "dir", c.dataDir)
	args := []string{
		"--pgdata=" + c.dataDir,
		"--username=" + superuser,
		"--encoding=UTF8",
		"--no-locale",
	}
	if c.password == "" {
		// Trust on loopback: throwaway test clusters only (see Options.Password).
		args = append(args, "--auth=trust")
	} else {
		pwFile := filepath.Join(c.dir, "initdb.pw")
		_ = os.Remove(pwFile)
		if err := os.WriteFile(pwFile, []byte(c.password+"\n"), 0o600); err != nil {
			return fmt.Errorf("write password file: %w", err)
		}
		defer os.Remove(pwFile)
		if err := c.chown(pwFile); err != nil {
			return err
		}
		args = append(args, "--auth=scram-sha-256", "--pwfile="+pwFile)
	}
	if c.ephemeral {
		args = append(args, "--no-sync")
	}
	if out, err := c.command(ctx, "initdb", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, tailLines(out, 20))
	}
	return nil
}

// configure includes our settings file from postgresql.conf and (re)writes it
// with the port: the one asked for, else the one the cluster has, else a free
// one.
func (c *Cluster) configure(want int) error {
	mainConf := filepath.Join(c.dataDir, "postgresql.conf")
	b, err := os.ReadFile(mainConf)
	if err != nil {
		return fmt.Errorf("read postgresql.conf: %w", err)
	}
	if !bytes.Contains(b, []byte(includeLine)) {
		f, err := os.OpenFile(mainConf, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open postgresql.conf: %w", err)
		}
		_, err = fmt.Fprintf(f, "\n# Settings managed by mcpauth (storage/pgcluster), rewritten at every start.\n%s\n", includeLine)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("append to postgresql.conf: %w", err)
		}
	}

	confPath := filepath.Join(c.dataDir, confName)
	port := want
	if port == 0 {
		port = configuredPort(confPath)
	}
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `# Written by mcpauth (storage/pgcluster) at every start of this cluster.
# Other settings belong in postgresql.conf (above the include line) or ALTER SYSTEM.
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = ''
`, port)
	if c.ephemeral {
		conf.WriteString(`# Throwaway test cluster: durability traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
`)
	}
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", confName, err)
	}
	if err := c.chown(confPath); err != nil {
		return err
	}
	c.port = port
	return nil
}

var portSetting = regexp.MustCompile(`(?m)^\s*port\s*=\s*(\d+)`)

// configuredPort returns the port in our settings file, or 0.
func configuredPort(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	m := portSetting.FindSubmatch(b)
	if m == nil {
		return 0
	}
	p, err := strconv.Atoi(string(m[1]))
	if err != nil || p <= 0 || p > 65535 {
		return 0
	}
	return p
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// startChild runs postgres as a direct child of this process, its output
// appended to the log, and waits until it accepts connections.
func (c *Cluster) startChild(ctx context.Context) error {
	logFile, err := c.openLog()
	if err != nil {
		return err
	}
	cmd := c.command(context.Background(), "postgres", "-D", c.dataDir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(c.acct, false, true)

	startErr := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		// The parent-death signal is sent when the thread that forked the
		// server exits, not the process (prctl(2), PR_SET_PDEATHSIG), and
		// the Go runtime may end threads. Stay on this thread until the
		// server has exited; the runtime then ends it, as it is still locked.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			return
		}
		startErr <- nil
		_ = cmd.Wait() // the exit status is in the log; Stop only needs to know it is gone
		close(exited)
	}()
	err = <-startErr
	_ = logFile.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("run postgres: %w", err)
	}
	c.mu.Lock()
	c.child, c.exited = cmd, exited
	c.mu.Unlock()

	if err := c.waitReady(ctx, c.port, readyTimeout, exited); err != nil {
		_ = signalImmediateShutdown(cmd.Process.Pid)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		return c.withLog(fmt.Errorf("wait for the server on port %d: %w", c.port, err))
	}
	return nil
}

// startDetached starts the server with pg_ctl, in its own session so that it
// outlives this process and a Ctrl-C aimed at it.
func (c *Cluster) startDetached(ctx context.Context) error {
	logFile, err := c.openLog()
	if err != nil {
		return err
	}
	_ = logFile.Close() // pg_ctl appends to it as the server's user
	cmd := c.command(ctx, "pg_ctl", "start",
		"--pgdata="+c.dataDir,
		"--log="+c.logPath,
		"--wait",
		"--timeout="+strconv.Itoa(int(readyTimeout/time.Second)),
		"--silent",
	)
	cmd.SysProcAttr = sysProcAttr(c.acct, true, false)
	if out, err := cmd.CombinedOutput(); err != nil {
		return c.withLog(fmt.Errorf("pg_ctl start: %w: %s", err, bytes.TrimSpace(out)))
	}
	if err := c.waitReady(ctx, c.port, readyTimeout, nil); err != nil {
		return c.withLog(fmt.Errorf("wait for the server on port %d: %w", c.port, err))
	}
	return nil
}

// waitReady polls until the server of this data directory accepts
// connections on port, timeout passes, ctx ends or exited is closed (a nil
// exited is never closed).
func (c *Cluster) waitReady(ctx context.Context, port int, timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	for {
		err := c.ready(port)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no connection after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-exited:
			return errors.New("the server exited")
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// ready reports whether the server of this data directory accepts
// connections on port. A connection alone does not prove that: another
// server may hold the port while ours fails to bind it. So the server must
// also have declared itself ready in postmaster.pid, which PostgreSQL 10 and
// later do once they listen.
func (c *Cluster) ready(port int) error {
	_, pidPort, status, ok := c.runningServer()
	switch {
	case !ok:
		return errors.New("no server process for the data directory")
	case pidPort != port:
		return fmt.Errorf("the server of the data directory uses port %d, not %d", pidPort, port)
	case status == "":
		return errors.New("the server has not finished starting")
	case status != "ready" && status != "standby":
		return fmt.Errorf("the server is %s", status)
	}
	return probe(port)
}

// command builds the command for one of the server programs, run in the
// cluster directory as the server's account, with a minimal environment so
// that the caller's PG* variables cannot redirect it.
func (c *Cluster) command(ctx context.Context, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, program), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{
		"PATH=" + c.binDir + string(os.PathListSeparator) + "/usr/bin" + string(os.PathListSeparator) + "/bin",
		"HOME=" + c.dir,
		"LC_ALL=C",
	}
	cmd.SysProcAttr = sysProcAttr(c.acct, false, false)
	return cmd
}

// openLog opens the server log for appending, creating it for the server's account.
func (c *Cluster) openLog() (*os.File, error) {
	f, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	if err := c.chown(c.logPath); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// chown gives path to the server's account when this process is root.
func (c *Cluster) chown(path string) error {
	if c.acct == nil {
		return nil
	}
	if err := os.Lchown(path, int(c.acct.uid), int(c.acct.gid)); err != nil {
		return fmt.Errorf("give %s to user %s: %w", filepath.Base(path), c.acct, err)
	}
	return nil
}

// withLog appends the end of the server log to err, where the server says
// why it failed.
func (c *Cluster) withLog(err error) error {
	b, rerr := os.ReadFile(c.logPath)
	if rerr != nil || len(bytes.TrimSpace(b)) == 0 {
		return err
	}
	return fmt.Errorf("%w\nlast lines of %s:\n%s", err, c.logPath, tailLines(b, 20))
}

// tailLines returns at most the last n lines of b (and at most 4 KiB).
func tailLines(b []byte, n int) string {
	b = bytes.TrimRight(b, "\n")
	if len(b) > 4<<10 {
		b = b[len(b)-4<<10:]
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
