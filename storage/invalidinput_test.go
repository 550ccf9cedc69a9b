package storage_test

import (
	"errors"
	"testing"

	"github.com/mcpauth/mcpauth/storage"
	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestInvalidInputIsInvalidInput: a value PostgreSQL cannot take as text
// (invalid UTF-8, NUL; SQLSTATE 22021) is ErrInvalidInput, the caller's
// error, not an opaque server failure.
func TestInvalidInputIsInvalidInput(t *testing.T) {
	db := storagetest.New(t)
	for _, v := range []string{"\xff", "a\x00b"} {
		_, err := db.ListAuditEvents(t.Context(), storage.AuditFilter{User: v})
		if !errors.Is(err, storage.ErrInvalidInput) {
			t.Errorf("ListAuditEvents(user %q) = %v, want ErrInvalidInput", v, err)
		}
		if _, err := db.Client(t.Context(), v); !errors.Is(err, storage.ErrInvalidInput) {
			t.Errorf("Client(%q) = %v, want ErrInvalidInput", v, err)
		}
	}
}
