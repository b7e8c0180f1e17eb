// Command spectraclip trains, evaluates and runs learned hyperspectral anomaly detection:
// a cube is normalised, reduced to 3 channels (PCA, a DRCNN mixer or a Concrete band
// selector) and scored by a frozen zero-shot detector through which gradients flow.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/bench"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// globals are the flags every command shares.
type globals struct {
	logLevel  string
	logFormat string
	out       io.Writer
	errOut    io.Writer
	log       *logrus.Logger
}

func (g *globals) setup() error {
	g.log = logrus.New()
	g.log.SetOutput(g.errOut)
	lvl, err := logrus.ParseLevel(g.logLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	g.log.SetLevel(lvl)
	switch g.logFormat {
	case "text":
		g.log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		g.log.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("--log-format %q (allowed: text, json)", g.logFormat)
	}
	return nil
}

// NewRootCmd builds the command tree writing to out and errOut.
func NewRootCmd(out, errOut io.Writer) *cobra.Command {
	g := &globals{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:           "spectraclip",
		Short:         "learned hyperspectral anomaly detection over LibTorch",
		SilenceUsage:  true,
		SilenceErrors: true,
		// suggestions are printed by main on the error line (cobra's take extra lines)
		DisableSuggestions:         true,
		SuggestionsMinimumDistance: 2,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return g.setup()
		},
	}
	root.SetOut(out)
	root.SetErr(errOut)
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newVersionCmd(g),
		newTrainCmd(g),
		newEvalCmd(g),
		newInferCmd(g),
		newCompareCmd(g),
		newCalibrateCmd(g),
		newSynthCmd(g),
		newDetectCmd(g),
		newExportDetectorCmd(g),
		newGraphCmd(g),
		newPluginsCmd(g),
		newBenchCmd(g),
		newSweepCmd(g),
		newServeCmd(g),
		newScoreCmd(g),
		newLoadtestCmd(g),
	)
	return root
}

func main() {
	// an isolated bench's child process (spectraclip bench re-runs this executable)
	if code, isChild := bench.ChildMain(); isChild {
		os.Exit(code)
	}
	root := NewRootCmd(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", errorLine(root, err))
		os.Exit(1)
	}
}

var unknownCommandRe = regexp.MustCompile(`^unknown command "([^"]*)" for "([^"]*)"`)

// errorLine is err as the one line main prints: an unknown command carries its suggestion
// on that line (cobra's own suggestions are off: they add lines), and any other multi-line
// error is joined with "; ".
func errorLine(root *cobra.Command, err error) string {
	msg := strings.TrimSpace(err.Error())
	if m := unknownCommandRe.FindStringSubmatch(msg); m != nil {
		if sug := root.SuggestionsFor(m[1]); len(sug) > 0 {
			return fmt.Sprintf("%s (did you mean %s?)", m[0], strings.Join(sug, " or "))
		}
		return m[0] + " (see spectraclip --help)"
	}
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	line := strings.Join(parts, "; ")
	// Every writer names its file; a full disk is said in the same words whichever wrote it
	// (LibTorch's archive writers and the atomic writers already do, the rest say ENOSPC's own).
	if (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)) && !strings.Contains(line, "disk is full") {
		line += " (the disk is full)"
	}
	return line
}
