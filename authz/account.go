package authz

import "github.com/go-chi/chi/v5"

// The signed-in user's own page (/account), issue 6.

// accountRoutes adds /account.
func (s *Server) accountRoutes(r chi.Router) {}
