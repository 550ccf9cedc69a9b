package authz

import "github.com/go-chi/chi/v5"

// The administrator's console (/admin) and JSON API (/admin/api/v1/), issue 6.

// adminRoutes adds the console and the admin API.
func (s *Server) adminRoutes(r chi.Router) {}
