package route

// MemoryUsers counts the users m holds routes for, for route_test.
func MemoryUsers(m *Memory) int {
	users := 0
	for i := range m.shards {
		users += len(m.shards[i].users)
	}
	return users
}
