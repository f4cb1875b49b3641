package engine

// CloseListener closes the listener s accepts on, under the server, as a
// listener that fails would: for tests of what notices a failed server.
func CloseListener(s *Server) { _ = s.ln.Close() }
