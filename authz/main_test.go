package authz

import (
	"testing"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestMain starts (lazily, on the first test that asks) the package's
// throwaway PostgreSQL cluster and stops it at the end.
func TestMain(m *testing.M) { storagetest.Main(m) }
