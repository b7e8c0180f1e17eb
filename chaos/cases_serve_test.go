package chaos

// serveCases are the corpus cases for the server's flags, bodies and shm folder (#25 items 7-10, 12).
func serveCases() []Case {
	var cs []Case
	return cs
}
