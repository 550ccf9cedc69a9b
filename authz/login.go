package authz

import "github.com/go-chi/chi/v5"

// sessions is the state of users' browser sign-in. (Being built.)
type sessions struct{}

func (s *Server) initSessions() error { s.sessions = &sessions{}; return nil }

func (s *Server) sessionRoutes(r chi.Router) {}
