package resource

import (
	"testing"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

// TestMain stops the throwaway PostgreSQL cluster that tests needing a
// database (the admin tools) start on first use; the other tests never
// start it.
func TestMain(m *testing.M) { storagetest.Main(m) }
