package oauth

import (
	"errors"
	"fmt"
	"strings"
)

// Limits on a scope parameter; anything larger is hostile or broken.
const (
	MaxScopeLen    = 2048
	MaxScopeTokens = 64
)

// ParseScope splits a scope parameter (RFC 6749 §3.3) into its tokens, in
// order, without duplicates. Tokens are separated by one or more spaces and
// made of the characters %x21 / %x23-5B / %x5D-7E; anything else is an error.
// An empty or all-space parameter is an empty list.
func ParseScope(s string) ([]string, error) {
	if len(s) > MaxScopeLen {
		return nil, fmt.Errorf("scope longer than %d bytes", MaxScopeLen)
	}
	var out []string
	for tok := range strings.SplitSeq(s, " ") {
		if tok == "" {
			continue
		}
		if err := validScopeToken(tok); err != nil {
			return nil, err
		}
		if !containsString(out, tok) {
			if len(out) == MaxScopeTokens {
				return nil, fmt.Errorf("more than %d scopes", MaxScopeTokens)
			}
			out = append(out, tok)
		}
	}
	return out, nil
}

func validScopeToken(tok string) error {
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return errors.New("scope contains a character RFC 6749 §3.3 does not allow")
		}
	}
	return nil
}

// FormatScope joins scope tokens with single spaces.
func FormatScope(scopes []string) string { return strings.Join(scopes, " ") }

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
