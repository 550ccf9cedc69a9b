package storage_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestUnavailable: a database that cannot be reached, or that drops the
// connection under a query, is ErrUnavailable (which the HTTP layers answer
// with 503); a missing row or a cancelled request is not; and the pool
// reconnects by itself once the server takes connections again.
func TestUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	_, err = storage.Open(t.Context(), fmt.Sprintf("postgres://nobody@127.0.0.1:%d/none?connect_timeout=2", port))
	if err == nil || !storage.IsUnavailable(err) {
		t.Errorf("Open on a closed port: %v, want a database-unavailable error", err)
	}

	url := storagetest.URL(t)
	db, err := storage.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	admin, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())

	// The server ends every other session of the database (as a restart
	// does) while a transaction holds one.
	err = db.InTx(t.Context(), func(ctx context.Context) error {
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
			t.Fatalf("terminate sessions: %v", err)
		}
		_, err := db.Client(ctx, "some-client")
		return err
	})
	if !errors.Is(err, storage.ErrUnavailable) || !storage.IsUnavailable(err) {
		t.Fatalf("query on a terminated connection: %v, want ErrUnavailable", err)
	}
	if errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a dropped connection must not read as a missing row: %v", err)
	}

	// The next call gets a fresh connection.
	if _, err := db.Client(t.Context(), "some-client"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after the sessions were ended: %v, want ErrNotFound from a reconnected pool", err)
	}

	for _, e := range []error{nil, storage.ErrNotFound, storage.ErrConflict, context.Canceled, errors.New("syntax error")} {
		if storage.IsUnavailable(e) {
			t.Errorf("IsUnavailable(%v) = true", e)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.Client(ctx, "some-client"); storage.IsUnavailable(err) {
		t.Errorf("a cancelled request is not an outage: %v", err)
	}
}

// TestUnavailableSilent: a database that accepts connections but never
// answers (a partition) fails a connect within the default connect timeout
// and a query at the caller's deadline, both as ErrUnavailable, instead of
// hanging.
func TestUnavailableSilent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never answered
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := storage.Open(context.Background(), "postgres://nobody@"+ln.Addr().String()+"/none")
		done <- err
	}()
	select {
	case err := <-done:
		if !storage.IsUnavailable(err) {
			t.Errorf("Open on a silent server: %v, want a database-unavailable error", err)
		}
	case <-time.After(3 * storage.DefaultConnectTimeout):
		t.Fatal("Open on a silent server hangs: no default connect timeout")
	}

	proxy := storagetest.NewProxy(t, storagetest.URL(t))
	db, err := storage.Open(t.Context(), proxy.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Client(t.Context(), "some-client"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("through the proxy: %v", err)
	}
	proxy.Silence()
	for range 2 { // the pooled connection, then a new one
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		_, err = db.Client(ctx, "some-client")
		cancel()
		if !errors.Is(err, storage.ErrUnavailable) || !storage.IsUnavailable(err) {
			t.Errorf("query on a silent server past its deadline: %v, want ErrUnavailable", err)
		}
	}
	proxy.Restore()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := db.Client(t.Context(), "some-client")
		if errors.Is(err, storage.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the partition healed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
