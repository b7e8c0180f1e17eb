// Package configs embeds the shipped YAML configurations, so that the program runs the
// tutorial variants from any directory.
package configs

import "embed"

// FS holds trainrun/, data/ and training/.
//
//go:embed trainrun/*.yaml data/*.yaml training/*.yaml
var FS embed.FS
