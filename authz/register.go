package authz

import "github.com/go-chi/chi/v5"

// registration is the state of dynamic client registration. (Being built.)
type registration struct{}

func (s *Server) initRegistration() error { s.reg = &registration{}; return nil }

func (s *Server) registrationRoutes(r chi.Router) {}
