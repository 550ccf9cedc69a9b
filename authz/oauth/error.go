// Package oauth is the protocol vocabulary shared by the authorization server
// and the resource server: OAuth error codes, the one error type that goes on
// the wire, and (as they arrive) the parsers for scopes, redirect URIs and
// resource indicators.
//
// It imports only the standard library.
package oauth

import (
	"encoding/json"
	"errors"
	"net/http"
)

// Error codes from RFC 6749 §5.2, RFC 7009, RFC 7591 §3.2.2, RFC 6750 §3.1
// and RFC 8707 §2.
const (
	InvalidRequest          = "invalid_request"
	InvalidClient           = "invalid_client"
	InvalidGrant            = "invalid_grant"
	UnauthorizedClient      = "unauthorized_client"
	UnsupportedGrantType    = "unsupported_grant_type"
	InvalidScope            = "invalid_scope"
	InvalidTarget           = "invalid_target"
	InvalidToken            = "invalid_token"
	InsufficientScope       = "insufficient_scope"
	InvalidClientMetadata   = "invalid_client_metadata"
	InvalidRedirectURI      = "invalid_redirect_uri"
	TemporarilyUnavailable  = "temporarily_unavailable"
	ServerError             = "server_error"
	UnsupportedTokenType    = "unsupported_token_type"
	AccessDenied            = "access_denied"
	UnsupportedResponseType = "unsupported_response_type"
)

// Error is the one error type that reaches a client. Code and Description go
// on the wire; Err is the cause, for the log only.
type Error struct {
	Code        string
	Description string
	Status      int   // HTTP status; 0 means 400
	Err         error // never sent to the client
}

func (e *Error) Error() string {
	msg := e.Code
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status the error is sent with.
func (e *Error) HTTPStatus() int {
	if e.Status == 0 {
		return http.StatusBadRequest
	}
	return e.Status
}

// body is the JSON error response of RFC 6749 §5.2.
type body struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// WriteError writes err as an OAuth error response. An error that is not an
// *Error becomes server_error/500 with nothing of it sent; the caller logs it.
// It reports the status it wrote.
func WriteError(w http.ResponseWriter, err error) int {
	var oe *Error
	if !errors.As(err, &oe) {
		oe = &Error{Code: ServerError, Description: "internal error", Status: http.StatusInternalServerError}
	}
	status := oe.HTTPStatus()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// RFC 6749 §5.1: responses carrying (or refusing) credentials are never cached.
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body{Error: oe.Code, ErrorDescription: oe.Description})
	return status
}
