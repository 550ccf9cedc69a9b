package authz

import (
	"bytes"
	"net/http"

	"github.com/mcpauth/mcpauth/web"
)

// pageHeaders are the headers of every HTML page: a strict CSP with no
// script and no framing (clickjacking), no MIME sniffing, and no referrer
// beyond our own origin (same-origin rather than no-referrer: with
// no-referrer, browsers without Fetch Metadata send "Origin: null" on our
// own form posts, which the CSRF origin check must refuse).
func pageHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// render writes page with data, or a bare 500 if the template fails; it
// renders into a buffer first so a failure never leaves half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	pageHeaders(w.Header())
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *Server) handleHome(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	s.render(w, r, http.StatusOK, "home", struct{ Issuer string }{s.cfg.Issuer})
}

// staticFiles serves web's static tree under /static/.
func staticFiles() http.Handler {
	files := http.StripPrefix("/static/", http.FileServerFS(web.Static()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
