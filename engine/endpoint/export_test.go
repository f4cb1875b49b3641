package endpoint

// CoolRound runs one cooling round now (endpoint_cool.go).
func (e *Handler) CoolRound() { e.coolRound() }
