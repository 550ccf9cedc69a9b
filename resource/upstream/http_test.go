package upstream

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHTTPErrorBodyCapped: a non-2xx response is read at most maxErrorBody
// bytes, whatever its Content-Type (the go-sdk reads a failed response's
// body whole, SSE or not); a 2xx SSE stream is left to MaxEventSize, and a
// 2xx body of any other type (the media type compared case-insensitively)
// is capped at MaxResultBytes plus slack.
func TestHTTPErrorBodyCapped(t *testing.T) {
	const total = 32 << 20
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, ct := http.StatusBadRequest, "text/event-stream"
		switch r.URL.Path {
		case "/sse-ok":
			status = http.StatusOK
		case "/json-ok":
			status, ct = http.StatusOK, "Application/JSON; charset=utf-8"
		case "/sse-upper":
			status, ct = http.StatusOK, "TEXT/Event-Stream"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for n := 0; n < total; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			written.Add(int64(len(chunk)))
		}
	}))
	defer srv.Close()
	tr := &upstreamTransport{base: http.DefaultTransport, cfg: &Config{MaxResultBytes: 1024}}
	read := func(path string) (int, error) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return len(b), err
	}
	if n, err := read("/error"); !errors.Is(err, errBodyTooLarge) || n > maxErrorBody {
		t.Errorf("400 text/event-stream: read %d bytes, err %v; want at most %d and errBodyTooLarge", n, err, maxErrorBody)
	}
	if n, err := read("/json-ok"); !errors.Is(err, errBodyTooLarge) || n > 1024+lineSlack {
		t.Errorf("200 Application/JSON: read %d bytes, err %v; want at most %d and errBodyTooLarge", n, err, 1024+lineSlack)
	}
	for _, path := range []string{"/sse-ok", "/sse-upper"} {
		if n, err := read(path); err != nil || n != total {
			t.Errorf("200 %s: read %d bytes, err %v; want all %d", path, n, err, total)
		}
	}
}
