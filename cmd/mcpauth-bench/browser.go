package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// browser signs in and consents on mcpauth's pages as a person would: it
// keeps cookies, follows redirects on the server's own origin and submits
// the forms it is shown, hidden fields (csrf_token, the consent's request)
// included. It is how the bench mints authorization codes through the real
// /authorize flow.
type browser struct {
	c              *http.Client
	user, password string
}

func newBrowser(transport http.RoundTripper, user, password string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{user: user, password: password, c: &http.Client{
		Jar:           jar,
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	url    *url.URL
	status int
	header http.Header
	body   string
}

func (b *browser) do(req *http.Request) (*page, error) {
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	return &page{url: req.URL, status: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

func (b *browser) get(u string) (*page, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

// location is where a redirect on p points.
func (p *page) location() (*url.URL, error) {
	loc := p.header.Get("Location")
	if loc == "" {
		return nil, fmt.Errorf("%s answered %d without Location", p.url, p.status)
	}
	return p.url.Parse(loc)
}

func isRedirect(p *page) bool {
	return p.status == http.StatusSeeOther || p.status == http.StatusFound
}

// authorize opens authURL, signs in and approves as asked, and returns
// where the server finally sends the browser: the client's redirect URI.
func (b *browser) authorize(authURL string) (*url.URL, error) {
	p, err := b.get(authURL)
	for range 12 {
		if err != nil {
			return nil, err
		}
		switch {
		case isRedirect(p):
			next, err := p.location()
			if err != nil {
				return nil, err
			}
			if next.Host != p.url.Host {
				return next, nil
			}
			p, err = b.get(next.String())
			continue
		case p.status == http.StatusOK && strings.Contains(p.body, `name="password"`):
			p, err = b.submit(p, "password", url.Values{"username": {b.user}, "password": {b.password}})
		case p.status == http.StatusOK && strings.Contains(p.body, `name="decision"`):
			p, err = b.submit(p, "decision", url.Values{"decision": {"allow"}})
		default:
			return nil, fmt.Errorf("unexpected page %s (%d): %.300s", p.url, p.status, p.body)
		}
	}
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("authorization did not finish at %s", p.url)
}

// submit posts the form of p that has a field or button named name, with
// its own values overlaid by set, as a same-origin form submission.
func (b *browser) submit(p *page, name string, set url.Values) (*page, error) {
	action, values, err := findForm(p.body, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.url, err)
	}
	for k, v := range set {
		values[k] = v
	}
	u, err := p.url.Parse(action)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader(values.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", p.url.Scheme+"://"+p.url.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

// findForm returns the action and the values (inputs other than buttons;
// checkboxes only when checked) of the first form in body with an input or
// button named name.
func findForm(body, name string) (action string, values url.Values, err error) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return "", nil, err
	}
	type form struct {
		action string
		values url.Values
		has    bool
	}
	var forms []*form
	var cur *form
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attr := map[string]string{}
			checked := false
			for _, a := range n.Attr {
				attr[a.Key] = a.Val
				checked = checked || a.Key == "checked"
			}
			switch n.Data {
			case "form":
				cur = &form{action: attr["action"], values: url.Values{}}
				forms = append(forms, cur)
			case "input", "button":
				if cur == nil || attr["name"] == "" {
					break
				}
				if attr["name"] == name {
					cur.has = true
				}
				switch {
				case n.Data == "button" || attr["type"] == "submit":
				case (attr["type"] == "checkbox" || attr["type"] == "radio") && !checked:
				default:
					cur.values.Add(attr["name"], attr["value"])
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for _, f := range forms {
		if f.has {
			return f.action, f.values, nil
		}
	}
	return "", nil, fmt.Errorf("no form with %q", name)
}
