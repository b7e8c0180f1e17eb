package chaos

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveFlagCase runs serve on the fixture run with one bad flag (args), on loopback ports
// of its own; it must exit 1 with one error line naming the flag before it listens or
// opens the run. prep, when set, writes the case's files and returns the flag's value.
func serveFlagCase(name string, flag string, value string, prep func(t *testing.T, e *Env) string, mentions ...string) Case {
	return Case{Name: "serve/" + name, Mentions: append([]string{flag}, mentions...), Timeout: 30 * time.Second, Build: func(t *testing.T, e *Env) Invocation {
		fx := e.Fixtures(t)
		v := value
		if prep != nil {
			v = prep(t, e)
		}
		return Invocation{Args: []string{"serve", "--run", fx.run, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", flag, v}}
	}}
}

// fileWith writes name with text and mode into the case's directory and returns its path.
func fileWith(name, text string, mode uint32) func(t *testing.T, e *Env) string {
	return func(t *testing.T, e *Env) string {
		p := write(t, e.Dir, name, []byte(text))
		if err := os.Chmod(p, os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// serveCases are the corpus cases for the server's flags, bodies and shm folder (#25 items 7-10, 12).
func serveCases() []Case {
	return []Case{
		// #25 item 8: bounded before it becomes a byte count (2^43 MiB overflowed and disabled the size checks)
		serveFlagCase("max-cube-mb-overflow", "--max-cube-mb", "8796093022208", nil, "65536"),
		serveFlagCase("max-cube-mb-zero", "--max-cube-mb", "0", nil),
		serveFlagCase("max-cube-mb-negative", "--max-cube-mb", "-1", nil),
		// #25 item 9
		serveFlagCase("threads-huge", "--threads", "100000", nil, "256"),
		serveFlagCase("threads-negative", "--threads", "-1", nil),
		serveFlagCase("workers-huge", "--workers", "1000", nil, "64"),
		serveFlagCase("workers-negative", "--workers", "-2", nil),
		serveFlagCase("max-batch-huge", "--max-batch", "100000000", nil, "1024"),
		serveFlagCase("max-batch-zero", "--max-batch", "0", nil),
		serveFlagCase("queue-huge", "--queue", "10000000", nil, "65536"),
		serveFlagCase("queue-zero", "--queue", "0", nil),
		serveFlagCase("max-wait-negative", "--max-wait", "-1ms", nil),
		// #25 item 10: a negative timeout started and answered 504 to everything
		serveFlagCase("timeout-negative", "--timeout", "-1s", nil),
		serveFlagCase("timeout-zero", "--timeout", "0s", nil),
		serveFlagCase("drain-timeout-negative", "--drain-timeout", "-5s", nil),
		// #25 item 7: the in-flight budget
		serveFlagCase("max-inflight-mb-below-cube", "--max-inflight-mb", "10", nil, "--max-cube-mb"),
		serveFlagCase("max-inflight-mb-huge", "--max-inflight-mb", "99999999999", nil, "1048576"),
		// #25 item 12: the token file and TLS pair
		serveFlagCase("token-file-missing", "--token-file", "", func(t *testing.T, e *Env) string { return filepath.Join(e.Dir, "no-token") }, "$no-token"),
		serveFlagCase("token-file-empty", "--token-file", "", fileWith("token", "\n", 0o600), "$token", "empty"),
		serveFlagCase("token-file-world-readable", "--token-file", "", fileWith("token", "s3cret\n", 0o644), "$token", "other users"),
		serveFlagCase("token-file-two-lines", "--token-file", "", fileWith("token", "one\ntwo\n", 0o600), "$token"),
		serveFlagCase("tls-cert-without-key", "--tls-cert", "", fileWith("cert.pem", "x", 0o600), "--tls-key"),
		serveFlagCase("tls-key-without-cert", "--tls-key", "", fileWith("key.pem", "x", 0o600), "--tls-cert"),
		{Name: "serve/tls-pair-not-pem", Mentions: []string{"--tls-cert", "$cert.pem"}, Timeout: 30 * time.Second, Build: func(t *testing.T, e *Env) Invocation {
			fx := e.Fixtures(t)
			c, k := write(t, e.Dir, "cert.pem", []byte("not a certificate")), write(t, e.Dir, "key.pem", []byte("not a key"))
			return Invocation{Args: []string{"serve", "--run", fx.run, "--addr", "127.0.0.1:0", "--grpc-addr", "", "--tls-cert", c, "--tls-key", k}}
		}},
		// addresses and folders
		serveFlagCase("addr-no-port", "--addr", "nonsense", nil),
		serveFlagCase("shm-dir-not-a-folder", "--shm-dir", "", fileWith("shm", "x", 0o600), "$shm"),
	}
}
