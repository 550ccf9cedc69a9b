package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpauth/mcpauth/migrations"
	"github.com/mcpauth/mcpauth/storage/pgcluster"
)

// throwawayDatabase starts an Ephemeral PostgreSQL cluster in a temporary
// directory and returns the URL of a migrated database on it, and a
// function that stops the cluster and removes the directory. With
// statementStats the cluster is restarted once with pg_stat_statements
// loaded, and the database has the extension (for -profile).
func throwawayDatabase(ctx context.Context, statementStats bool) (string, func(), error) {
	dir, err := os.MkdirTemp("", "mcpauth-bench-")
	if err != nil {
		return "", nil, err
	}
	c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Ephemeral: true})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.Stop(sctx)
		os.RemoveAll(dir)
	}
	if statementStats {
		err := enableStatementStats(ctx, c.URL("postgres"))
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = c.Stop(sctx)
			cancel()
		}
		if err == nil {
			c, err = pgcluster.Start(ctx, pgcluster.Options{Dir: dir, Ephemeral: true, Port: c.Port()})
		}
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("load pg_stat_statements: %w", err)
		}
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err == nil {
		_, err = conn.Exec(ctx, "CREATE DATABASE mcpauth_bench")
		conn.Close(ctx)
	}
	if err == nil && statementStats {
		conn, err = pgx.Connect(ctx, c.URL("mcpauth_bench"))
		if err == nil {
			_, err = conn.Exec(ctx, "CREATE EXTENSION pg_stat_statements")
			conn.Close(ctx)
		}
	}
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	return c.URL("mcpauth_bench"), stop, nil
}

// server is `mcpauth serve` running as a child process on a loopback port.
type server struct {
	bin  string
	base string
	env  []string
	cmd  *exec.Cmd
	dir  string
	// exited receives the child's exit once it has gone.
	exited chan error
}

// relaxed are the rate limits the bench sets: far above what one machine
// can send, so that they are checked on every request but never refuse.
const relaxed = "100000000-S"

// startServer migrates databaseURL and starts bin serve on it.
// extraEnv is added to the child's environment (MCPAUTH_DEBUG_PPROF_ADDR).
func startServer(ctx context.Context, bin, databaseURL, registrationToken string, extraEnv ...string) (*server, error) {
	if err := migrations.Up(ctx, databaseURL); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mcpauth-bench-serve-")
	if err != nil {
		return nil, err
	}
	// The /mcp budget per user and client lives in the tool configuration.
	config := filepath.Join(dir, "mcpauth.yaml")
	if err := os.WriteFile(config, []byte("mcp:\n  rate_limit: "+relaxed+"\n"), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	secret := make([]byte, 48)
	rand.Read(secret)
	s := &server{bin: bin, base: "http://" + addr, dir: dir}
	s.env = append(os.Environ(),
		"MCPAUTH_ISSUER="+s.base,
		"MCPAUTH_ADDR="+addr,
		"MCPAUTH_DATABASE_URL="+databaseURL,
		"MCPAUTH_SECRET="+base64.StdEncoding.EncodeToString(secret),
		"MCPAUTH_REGISTRATION_TOKEN="+registrationToken,
		"MCPAUTH_CONFIG="+config,
		"MCPAUTH_LOG_LEVEL=warn",
		"MCPAUTH_CODE_TTL=10m",
		"MCPAUTH_RATE_LIMIT_REGISTER="+relaxed,
		"MCPAUTH_RATE_LIMIT_TOKEN="+relaxed,
		"MCPAUTH_RATE_LIMIT_AUTHORIZE="+relaxed,
		"MCPAUTH_RATE_LIMIT_LOGIN_IP="+relaxed,
		"MCPAUTH_RATE_LIMIT_LOGIN_USER="+relaxed,
	)
	s.env = append(s.env, extraEnv...)
	if err := s.launch(ctx, s.base); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// launch starts bin serve with s.env and waits until it answers at base.
func (s *server) launch(ctx context.Context, base string, args ...string) error {
	s.cmd = exec.Command(s.bin, append([]string{"serve"}, args...)...)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		resp, err := http.Get(base + "/.well-known/oauth-authorization-server")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-s.exited:
			return fmt.Errorf("mcpauth serve exited: %v", err)
		case <-deadline:
			s.cmd.Process.Kill()
			<-s.exited
			return errors.New("mcpauth serve did not answer within 30s")
		case <-ctx.Done():
			s.cmd.Process.Kill()
			<-s.exited
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replica starts a second mcpauth serve on the same database, with the
// same issuer, secret and settings, on another loopback port (without the
// pprof listener): two replicas behind one name, as DESIGN §7's revocation
// target has them. Its base is where it listens.
func (s *server) replica(ctx context.Context) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r := &server{bin: s.bin, base: "http://" + addr}
	for _, kv := range s.env {
		if strings.HasPrefix(kv, "MCPAUTH_ADDR=") || strings.HasPrefix(kv, "MCPAUTH_DEBUG_PPROF_ADDR=") {
			continue
		}
		r.env = append(r.env, kv)
	}
	r.env = append(r.env, "MCPAUTH_ADDR="+addr)
	if err := r.launch(ctx, r.base, "--no-migrate"); err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	return r, nil
}

// stop interrupts the server, kills it if it is not gone in 10 seconds,
// and removes its configuration.
func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// addUser creates a user with `mcpauth user add --password-stdin`.
func (s *server) addUser(ctx context.Context, name, password string) error {
	cmd := exec.CommandContext(ctx, s.bin, "user", "add", name, "--password-stdin")
	cmd.Env = s.env
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("user add: %v: %s", err, out)
	}
	return nil
}

// register registers a client by RFC 7591 with the initial access token.
func (s *server) register(ctx context.Context, token string, md map[string]any) (map[string]any, error) {
	body, _ := json.Marshal(md)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/register", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(raw, &out)
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("register: %s %s", resp.Status, raw)
	}
	return out, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
