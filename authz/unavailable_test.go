package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ory/fosite"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// TestUnavailableAnswers: the database being unreachable is
// temporarily_unavailable/503 with Retry-After wherever it surfaces — a
// handler's own error, fosite's wrapping of a client lookup (which it calls
// invalid_client) or of a grant's storage (server_error) — and a 503 page on
// the browser pages; other errors keep their meaning.
func TestUnavailableAnswers(t *testing.T) {
	s, _ := testServer(t, false, nil)
	down := fmt.Errorf("get client %q: %w: %w", "c1", storage.ErrUnavailable, errors.New("dial tcp: connection refused"))

	for name, err := range map[string]error{
		"handler error":          down,
		"fosite invalid_client":  fosite.ErrInvalidClient.WithWrap(down).WithDebug(down.Error()),
		"fosite server_error":    fosite.ErrServerError.WithWrap(down),
		"wrapped in oauth.Error": &oauth.Error{Code: oauth.ServerError, Status: 500, Err: down},
	} {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/token", nil)
			s.handle(func(w http.ResponseWriter, r *http.Request) error { return s.fositeError(w, r, err) })(w, r)
			var body map[string]string
			json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != unavailableRetryAfter || body["error"] != oauth.TemporarilyUnavailable {
				t.Errorf("got %d Retry-After %q %v", w.Code, w.Header().Get("Retry-After"), body)
			}
			if strings.Contains(w.Body.String(), "connection refused") {
				t.Errorf("the cause reached the client: %s", w.Body.String())
			}
		})
	}
	t.Run("server_error caused by the outage", func(t *testing.T) {
		w := httptest.NewRecorder()
		s.handle(func(http.ResponseWriter, *http.Request) error {
			return &oauth.Error{Code: oauth.ServerError, Description: "internal error", Status: http.StatusInternalServerError, Err: down}
		})(w, httptest.NewRequest(http.MethodPost, "/register", nil))
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("got %d", w.Code)
		}
	})
	t.Run("not unavailable", func(t *testing.T) {
		w := httptest.NewRecorder()
		s.handle(func(http.ResponseWriter, *http.Request) error { return errors.New("boom") })(w, httptest.NewRequest(http.MethodPost, "/register", nil))
		if w.Code != http.StatusInternalServerError || w.Header().Get("Retry-After") != "" {
			t.Errorf("an unknown error: %d %q", w.Code, w.Header().Get("Retry-After"))
		}
		w = httptest.NewRecorder()
		s.handle(func(w http.ResponseWriter, r *http.Request) error {
			return s.fositeError(w, r, fosite.ErrInvalidClient.WithWrap(storage.ErrNotFound))
		})(w, httptest.NewRequest(http.MethodPost, "/token", nil))
		if w.Code != http.StatusUnauthorized {
			t.Errorf("an unknown client: %d", w.Code)
		}
	})
	t.Run("authorize page", func(t *testing.T) {
		w := httptest.NewRecorder()
		s.authorizeRedirectError(w, httptest.NewRequest(http.MethodGet, "/authorize", nil), "https://client.example/cb", down)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || w.Header().Get("Location") != "" ||
			!strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Errorf("got %d %v", w.Code, w.Header())
		}
	})
}
