// Package web holds the browser pages' templates and static files, embedded
// in the binary. It has no handlers: the packages that serve pages parse the
// templates once and serve the static files from Static.
//
// It imports only the standard library.
package web

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"
)

//go:embed templates/*.html static
var files embed.FS

// Pages parses every page once: each templates/NAME.html together with
// layout.html, keyed by NAME. A page defines the "title" and "content"
// blocks; execute the "layout" template to render it.
func Pages() (map[string]*template.Template, error) {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := make(map[string]*template.Template)
	for _, name := range names {
		if path.Base(name) == "layout.html" {
			continue
		}
		t, err := template.ParseFS(files, "templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		pages[strings.TrimSuffix(path.Base(name), ".html")] = t
	}
	return pages, nil
}

// Static is the tree of static files (stylesheet, images), served under
// /static/.
func Static() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	return sub
}
