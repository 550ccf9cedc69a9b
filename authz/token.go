package authz

import "github.com/go-chi/chi/v5"

func (s *Server) tokenRoutes(r chi.Router) {}
