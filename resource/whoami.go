package resource

import (
	"context"
	"errors"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// WhoamiOutput is the result of the built-in whoami tool.
type WhoamiOutput struct {
	Subject   string    `json:"subject" jsonschema:"the user's id; the client's id for a client_credentials token"`
	ClientID  string    `json:"client_id" jsonschema:"the OAuth client the token was issued to"`
	Scopes    []string  `json:"scopes" jsonschema:"the scopes granted to the token"`
	ExpiresAt time.Time `json:"expires_at" jsonschema:"when the access token expires (RFC 3339)"`
	ExpiresIn int64     `json:"expires_in" jsonschema:"seconds until the access token expires"`
}

// addWhoami registers whoami, which needs only the basic scopes.
func addWhoami(s *Server) {
	AddTool(s, &mcp.Tool{
		Name:  "whoami",
		Title: "Who am I",
		Description: "Describe the caller's access token: the signed-in user (subject), the client " +
			"application, the scopes granted, and when the token expires. Use it to check which " +
			"tools the current authorization allows before calling them.",
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true, IdempotentHint: true, OpenWorldHint: new(false)},
	}, s.whoami)
}

func (s *Server) whoami(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, WhoamiOutput, error) {
	ti := TokenInfo(ctx)
	if ti == nil {
		return nil, WhoamiOutput{}, errors.New("authentication is disabled on this server: there is no caller")
	}
	out := WhoamiOutput{
		Subject:   ti.Subject,
		ClientID:  ti.ClientID,
		Scopes:    ti.Scopes,
		ExpiresAt: ti.Expiry.UTC(),
		ExpiresIn: max(0, int64(ti.Expiry.Sub(s.cfg.Now())/time.Second)),
	}
	if out.Scopes == nil {
		out.Scopes = []string{}
	}
	return nil, out, nil
}
