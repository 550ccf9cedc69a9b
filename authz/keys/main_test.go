package keys_test

import (
	"testing"

	"github.com/mcpauth/mcpauth/storage/storagetest"
)

func TestMain(m *testing.M) { storagetest.Main(m) }
