package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the screenshots of TestAdminBrowser to docs/images/")

// adminBrowserSize is the browser window of TestAdminBrowser, and so the
// size of its screenshots.
const adminBrowserWidth, adminBrowserHeight = 1000, 700

// adminBrowserStart starts Debian's headless chromium (never a downloaded
// browser) with a fresh profile and returns a tab. A machine without it
// fails the test: .ci/run installs it.
func adminBrowserStart(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (Debian package chromium; .ci/run installs it with apt-get install -y chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(adminBrowserWidth, adminBrowserHeight),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("hide-scrollbars", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(adminBrowserWidth, adminBrowserHeight)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// adminBrowserDo runs browser steps, failing the test on error.
func adminBrowserDo(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	stepCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(stepCtx, steps...); err != nil {
		diagCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		loc, _ := chromedp.Run(diagCtx, chromedp.Location())
		html, _ := chromedp.Run(diagCtx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, html)
	}
}

// adminBrowserText is the text of the page's main element.
func adminBrowserText(t *testing.T, ctx context.Context) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	return s
}

// adminBrowserSignIn fills in and submits the login form the browser shows.
func adminBrowserSignIn(t *testing.T, ctx context.Context, user, password string) {
	t.Helper()
	adminBrowserDo(t, ctx, "sign in as "+user,
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
	)
}

// adminBrowserSignOut signs the browser out through the sign-out page.
func adminBrowserSignOut(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	adminBrowserDo(t, ctx, "sign out",
		chromedp.Navigate(base+"/logout"),
		chromedp.Click(chromedp.CSS(`form[action="/logout"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
	)
}

// adminBrowserShot takes a screenshot of the window: a PNG, written to
// docs/images/NAME.png with -update-screenshots.
func adminBrowserShot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot %s is no PNG", name)
	}
	if *updateScreenshots {
		path := filepath.Join("..", "..", "docs", "images", name+".png")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAdminBrowser is issue 6's "Must show", in headless Chromium driven
// through the real pages: a user signs in and consents for a registered
// (DCR) client, which exchanges the code and calls /mcp; an administrator
// signs in to /admin and revokes that user's grant by clicking in the
// console; the client's next /mcp call gets 401 and its refresh
// invalid_grant; the user's /account no longer lists the application. It
// takes the screenshots of the login, consent, account and admin pages
// that the README shows (go test ./cmd/mcpauth -run TestAdminBrowser
// -update-screenshots rewrites them).
func TestAdminBrowser(t *testing.T) {
	ctx := adminBrowserStart(t)
	srv := startServer(t) // with the user alice
	adminPassword := srv.addUser(t, "root", "--admin")
	mcpURL := srv.issuer + "/mcp"

	// The client's redirect URI: a loopback listener that takes the code.
	codes := make(chan url.Values, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case codes <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><title>Notes</title><main><p id="done">Connected.</p></main>`))
	}))
	t.Cleanup(cb.Close)
	callback := cb.URL + "/callback"

	reg := srv.register(t, map[string]any{
		"client_name":                "Notes Assistant",
		"client_uri":                 "https://notes.example",
		"redirect_uris":              []string{callback},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code", "refresh_token"},
		"response_types":             []string{"code"},
		"scope":                      "mcp",
		"application_type":           "native",
	})
	clientID := reg["client_id"].(string)
	conf := &oauth2.Config{
		ClientID:    clientID,
		RedirectURL: callback,
		Scopes:      []string{"mcp"},
		Endpoint: oauth2.Endpoint{
			AuthURL:   srv.endpoint(t, "authorization_endpoint"),
			TokenURL:  srv.endpoint(t, "token_endpoint"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}
	verifier := oauth2.GenerateVerifier()
	state := "state-" + oauth2.GenerateVerifier()[:16]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", mcpURL))

	// The user signs in and consents.
	adminBrowserDo(t, ctx, "open the authorization URL",
		chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name="username"]`)),
	)
	adminBrowserShot(t, ctx, "login")
	adminBrowserSignIn(t, ctx, srv.user, srv.password)
	adminBrowserDo(t, ctx, "the consent page", chromedp.WaitVisible(chromedp.CSS(`button[value="allow"]`)))
	if text := adminBrowserText(t, ctx); !strings.Contains(text, "Notes Assistant") {
		t.Fatalf("the consent page does not name the client:\n%s", text)
	}
	adminBrowserShot(t, ctx, "consent")
	adminBrowserDo(t, ctx, "allow",
		chromedp.Click(chromedp.CSS(`button[value="allow"]`)),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	var q url.Values
	select {
	case q = <-codes:
	case <-time.After(10 * time.Second):
		t.Fatal("the browser never reached the redirect URI")
	}
	if q.Get("state") != state || q.Get("code") == "" {
		t.Fatalf("authorization response: %v", q)
	}

	// The client exchanges the code and calls /mcp.
	octx := context.WithValue(t.Context(), oauth2.HTTPClient, http.DefaultClient)
	tok, err := conf.Exchange(octx, q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", mcpURL))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if status, _ := mcpCall(t, srv.base, tok.AccessToken); status != http.StatusOK {
		t.Fatalf("/mcp with the new token: %d", status)
	}

	// The user's account page lists the application.
	adminBrowserDo(t, ctx, "the account page",
		chromedp.Navigate(srv.base+"/account"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/account/apps/revoke"]`)),
	)
	if text := adminBrowserText(t, ctx); !strings.Contains(text, "Notes Assistant") {
		t.Fatalf("/account does not list the application:\n%s", text)
	}
	adminBrowserShot(t, ctx, "account")
	adminBrowserSignOut(t, ctx, srv.base)

	// The administrator signs in to the console and revokes alice's grant.
	adminBrowserDo(t, ctx, "open the console", chromedp.Navigate(srv.base+"/admin/grants?user="+srv.user))
	adminBrowserSignIn(t, ctx, "root", adminPassword)
	adminBrowserDo(t, ctx, "the grants page", chromedp.WaitVisible(chromedp.CSS(`td form[action="/admin/grants/revoke"] button`)))
	if text := adminBrowserText(t, ctx); !strings.Contains(text, "Notes Assistant") || !strings.Contains(text, srv.user) {
		t.Fatalf("the grants page does not show alice's grant:\n%s", text)
	}
	adminBrowserShot(t, ctx, "admin")
	adminBrowserDo(t, ctx, "revoke the grant",
		chromedp.Click(chromedp.CSS(`td form[action="/admin/grants/revoke"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
	)
	if text := adminBrowserText(t, ctx); !strings.Contains(text, "Grant revoked") || !strings.Contains(text, "No live grants") {
		t.Fatalf("after revoking:\n%s", text)
	}

	// The client's next call is refused (within a second), and its refresh
	// token is dead.
	deadline := time.Now().Add(time.Second)
	for {
		status, challenge := mcpCall(t, srv.base, tok.AccessToken)
		if status == http.StatusUnauthorized {
			if !strings.Contains(challenge, `error="invalid_token"`) {
				t.Errorf("401 challenge %q", challenge)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/mcp still answers %d a second after the revocation", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	_, err = conf.TokenSource(octx, tok).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh after the revocation: %v, want invalid_grant", err)
	}

	// The user's /account no longer lists the application.
	adminBrowserSignOut(t, ctx, srv.base)
	adminBrowserDo(t, ctx, "open /account", chromedp.Navigate(srv.base+"/account"))
	adminBrowserSignIn(t, ctx, srv.user, srv.password)
	adminBrowserDo(t, ctx, "the account page again", chromedp.WaitVisible(chromedp.CSS(`form[action="/account/tokens"]`)))
	if text := adminBrowserText(t, ctx); strings.Contains(text, "Notes Assistant") || !strings.Contains(text, "No connected applications") {
		t.Fatalf("/account after the revocation:\n%s", text)
	}
}
