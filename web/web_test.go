package web

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"
)

func TestPagesRenderInTheLayout(t *testing.T) {
	pages, err := Pages()
	if err != nil {
		t.Fatal(err)
	}
	home, ok := pages["home"]
	if !ok {
		t.Fatalf("no home page among %v", pages)
	}
	var buf bytes.Buffer
	if err := home.ExecuteTemplate(&buf, "layout", map[string]string{"Issuer": `https://a.example/<script>`}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "<title>Identity provider · mcpauth</title>") {
		t.Errorf("layout title missing:\n%s", out)
	}
	if strings.Contains(out, "<script>") {
		t.Errorf("data is not escaped:\n%s", out)
	}
}

func TestStaticHasTheStylesheet(t *testing.T) {
	if _, err := fs.Stat(Static(), "style.css"); err != nil {
		t.Fatal(err)
	}
}
