package authz

// oauthService is fosite and what the token endpoints need. (Being built.)
type oauthService struct{}

func (s *Server) initOAuth() error { s.oauth = &oauthService{}; return nil }
