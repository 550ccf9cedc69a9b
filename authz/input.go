package authz

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/mcpauth/mcpauth/authz/oauth"
	"github.com/mcpauth/mcpauth/storage"
)

// maxInputLen bounds any one query, path or form value of the admin API,
// the console and /account: the longest identifier they take is a client
// id that is a metadata document's URL (maxClientIDURLLen).
const maxInputLen = maxClientIDURLLen

// checkInput refuses a value that no identifier or filter can hold: not
// UTF-8, a control character (NUL included), or over maxInputLen bytes.
// PostgreSQL would refuse the first two (SQLSTATE 22021) as a server error.
func checkInput(name, v string) error {
	switch {
	case len(v) > maxInputLen:
		return badRequest("%s is longer than %d bytes", name, maxInputLen)
	case !utf8.ValidString(v):
		return badRequest("%s is not valid UTF-8", name)
	case strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) }):
		return badRequest("%s contains a control character", name)
	}
	return nil
}

// checkRequestInputs checks every query parameter, path parameter and (once
// parsed) form value of r with checkInput. Names are checked too: they are
// echoed in the message.
func checkRequestInputs(r *http.Request) error {
	check := func(vs url.Values) error {
		for k, list := range vs {
			if err := checkInput("a parameter name", k); err != nil {
				return err
			}
			for _, v := range list {
				if err := checkInput(k, v); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := check(r.URL.Query()); err != nil {
		return err
	}
	if rc := chi.RouteContext(r.Context()); rc != nil {
		for i, k := range rc.URLParams.Keys {
			v, err := url.PathUnescape(rc.URLParams.Values[i])
			if err != nil {
				return badRequest("the path's %s is not percent-encoded correctly", k)
			}
			if err := checkInput(k, v); err != nil {
				return err
			}
		}
	}
	return check(r.PostForm)
}

// inputError turns storage.ErrInvalidInput (a value PostgreSQL could not
// take, which checkRequestInputs did not see: a JSON member) into a 400.
func inputError(err error) error {
	if err != nil && errors.Is(err, storage.ErrInvalidInput) {
		return &oauth.Error{Code: oauth.InvalidRequest, Description: "a value of the request is not valid text (invalid UTF-8 or a NUL character)", Err: err}
	}
	return err
}
