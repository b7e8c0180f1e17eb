package chaos

// boundsCases are the corpus cases for inputs that could inflate memory or never finish, and values that must be refused (#25 items 5, 9, 10, 11).
func boundsCases() []Case {
	var cs []Case
	return cs
}
