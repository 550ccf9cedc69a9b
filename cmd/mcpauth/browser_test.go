package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// browser is a person at a web browser, as far as mcpauth's pages can tell:
// it keeps cookies, follows links and submits the forms it is shown. It
// does not follow redirects by itself, so that tests can see each step.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// page is a response as the browser saw it.
type page struct {
	url    *url.URL
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) *page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &page{url: req.URL, status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *browser) get(u string) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// follow goes from p through redirects on the server's own origin and
// returns the first page that is not such a redirect: a page to read, or a
// redirect elsewhere (to the client).
func (b *browser) follow(p *page) *page {
	b.t.Helper()
	for range 10 {
		if p.status != http.StatusSeeOther && p.status != http.StatusFound {
			return p
		}
		next := b.location(p)
		if next.Host != p.url.Host {
			return p
		}
		p = b.get(next.String())
	}
	b.t.Fatalf("redirect loop at %s", p.url)
	return nil
}

func (b *browser) location(p *page) *url.URL {
	b.t.Helper()
	loc, err := p.url.Parse(p.header.Get("Location"))
	if err != nil || p.header.Get("Location") == "" {
		b.t.Fatalf("%s answered %d without a usable Location", p.url, p.status)
	}
	return loc
}

// form is a form found on a page, with the values it would submit.
type form struct {
	action  string
	method  string
	values  url.Values
	buttons map[string][]string // submit buttons by name: their values
}

// forms lists the page's forms.
func (p *page) forms(t *testing.T) []*form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	var out []*form
	var cur *form
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attr := map[string]string{}
			hasChecked := false
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
				if a.Key == "checked" {
					hasChecked = true
				}
			}
			switch n.Data {
			case "form":
				cur = &form{action: attr["action"], method: strings.ToUpper(attr["method"]), values: url.Values{}, buttons: map[string][]string{}}
				out = append(out, cur)
			case "input":
				if cur != nil && attr["name"] != "" {
					switch attr["type"] {
					case "checkbox", "radio":
						if hasChecked {
							cur.values.Add(attr["name"], attr["value"])
						}
					case "submit":
						cur.buttons[attr["name"]] = append(cur.buttons[attr["name"]], attr["value"])
					default:
						cur.values.Add(attr["name"], attr["value"])
					}
				}
			case "button":
				if cur != nil && attr["name"] != "" {
					cur.buttons[attr["name"]] = append(cur.buttons[attr["name"]], attr["value"])
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}

// formWith returns the page's form that has a field or button named name.
func (p *page) formWith(t *testing.T, name string) *form {
	t.Helper()
	for _, f := range p.forms(t) {
		if _, ok := f.values[name]; ok {
			return f
		}
		if _, ok := f.buttons[name]; ok {
			return f
		}
	}
	t.Fatalf("no form with %q on %s (status %d):\n%s", name, p.url, p.status, p.body)
	return nil
}

// submit posts f from page p, as the browser would (Origin and
// Sec-Fetch-Site of a same-origin form submission).
func (b *browser) submit(p *page, f *form, values url.Values) *page {
	b.t.Helper()
	action, err := p.url.Parse(f.action)
	if err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(values.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", p.url.Scheme+"://"+p.url.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

// signIn fills in and submits the login form on p.
func (b *browser) signIn(p *page, user, password string) *page {
	b.t.Helper()
	f := p.formWith(b.t, "password")
	v := cloneValues(f.values)
	v.Set("username", user)
	v.Set("password", password)
	return b.submit(p, f, v)
}

// approve submits the consent form on p with every ticked scope, or only
// with the scopes named.
func (b *browser) approve(p *page, only ...string) *page {
	b.t.Helper()
	f := p.formWith(b.t, "decision")
	v := cloneValues(f.values)
	if len(only) > 0 {
		v["grant_scope"] = only
	}
	v.Set("decision", "allow")
	return b.submit(p, f, v)
}

// authorize runs a whole authorization in the browser: open authURL, sign
// in if asked, approve if asked, and return where the server finally sends
// the browser (the client's redirect URI with code or error).
func (b *browser) authorize(authURL, user, password string) *url.URL {
	b.t.Helper()
	p := b.follow(b.get(authURL))
	for range 4 {
		switch {
		case p.status == http.StatusSeeOther || p.status == http.StatusFound:
			return b.location(p)
		case p.status == http.StatusOK && strings.Contains(p.body, `name="password"`):
			p = b.follow(b.signIn(p, user, password))
		case p.status == http.StatusOK && strings.Contains(p.body, `name="decision"`):
			p = b.follow(b.approve(p))
		default:
			b.t.Fatalf("unexpected page %s (%d):\n%s", p.url, p.status, p.body)
		}
	}
	b.t.Fatalf("authorization did not finish at %s", p.url)
	return nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
