package resource

import (
	"encoding/json"
	"net/http"
)

// wellKnownPRM is the RFC 9728 §3 well-known path. A client finds the
// document at the path-inserted URL (wellKnownPRM + the MCP path), from the
// resource_metadata of a 401, or at the root.
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// protectedResourceMetadata is the RFC 9728 §2 document.
type protectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ResourceName           string   `json:"resource_name,omitempty"`
}

func (s *Server) metadataDocument() ([]byte, error) {
	return json.MarshalIndent(protectedResourceMetadata{
		// RFC 9728 §3.3: resource is the URL the client used, byte for
		// byte (the TS SDK and the conformance suite compare it).
		Resource: s.cfg.Resource,
		// MCP 2026-07-28: authorization_servers[0] equals the AS
		// metadata issuer byte for byte.
		AuthorizationServers: []string{s.cfg.Issuer},
		// MCP 2025-11-25 "Scope Selection Strategy": the minimal set for
		// basic use; more come through step-up.
		ScopesSupported: s.cfg.Scopes,
		// RFC 6750 §2.1 only: tokens in a query or body are never read.
		BearerMethodsSupported: []string{"header"},
		ResourceName:           s.cfg.Name,
	}, "", "  ")
}

// handleMetadata serves the PRM document with open CORS: it is public,
// and browser-based clients fetch it cross-origin (RFC 9728 §3.1).
func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		// The TS SDK sends MCP-Protocol-Version when it fetches PRM.
		h.Set("Access-Control-Allow-Headers", "Content-Type, MCP-Protocol-Version")
		h.Set("Access-Control-Max-Age", "86400")
		h.Set("Allow", "GET, HEAD, OPTIONS")
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=3600")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(s.prm)
		w.Write([]byte("\n"))
	}
}
