package chaos

// diskCases are the corpus cases for a full disk, symlinked locks, stale infer partials and oversized or sparse tensor files (#25 items 1, 2, 4, 6).
func diskCases() []Case {
	var cs []Case
	return cs
}
