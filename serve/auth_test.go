package serve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spectraclip/spectraclip/serve/client"
)

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it; it returns the
// server's TLS configuration and a pool that trusts the CA.
func testCA(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spectraclip test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// TestTokenAndTLS (#25 item 12): with a token and TLS, over HTTPS and gRPC+TLS, a request
// with the token is scored, one without it or with a wrong one is refused (401,
// UNAUTHENTICATED) before its body is read; health checks stay open; a plaintext client
// gets no answer.
func TestTokenAndTLS(t *testing.T) {
	srvTLS, pool := testCA(t)
	const token = "0123456789abcdef-the-token"
	s, base, gaddr := startServer(t, Options{Token: token, TLS: srvTLS})
	base = strings.Replace(base, "http://", "https://", 1)
	rng := mrand.New(mrand.NewSource(time.Now().UnixNano()))
	cube := cubeOf(randomFrame(rng, 32, 32, s.Scorer().Bands))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, server := range []string{base, "grpc://" + gaddr} {
		for _, tc := range []struct {
			name, token string
			ok          bool
		}{{"right token", token, true}, {"wrong token", token + "x", false}, {"no token", "", false}, {"prefix of the token", token[:8], false}} {
			c, err := client.DialWith(server, client.Options{Token: tc.token, TLS: &tls.Config{RootCAs: pool}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Score(ctx, cube, false)
			c.Close()
			var se *client.StatusError
			switch {
			case tc.ok && err != nil:
				t.Errorf("%s, %s: %v", server, tc.name, err)
			case !tc.ok && strings.HasPrefix(server, "grpc") && status.Code(err) != codes.Unauthenticated:
				t.Errorf("%s, %s: %v, want UNAUTHENTICATED", server, tc.name, err)
			case !tc.ok && strings.HasPrefix(server, "https") && (!errors.As(err, &se) || se.Code != http.StatusUnauthorized):
				t.Errorf("%s, %s: %v, want 401", server, tc.name, err)
			}
		}
	}
	// health checks without a token, over TLS
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 401, "/": 401, "/v1/live": 401} {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without a token: %d, want %d", path, resp.StatusCode, want)
		}
		if want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("GET %s: 401 without WWW-Authenticate: Bearer", path)
		}
	}
	conn, err := grpc.NewClient(gaddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health without a token: %v %v", hr, err)
	}
	// plaintext against TLS: refused by both
	if resp, err := http.Get(strings.Replace(base, "https://", "http://", 1) + "/healthz"); err == nil {
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP against the TLS server answered 200")
		}
		resp.Body.Close()
	}
	pc, err := grpc.NewClient(gaddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := healthpb.NewHealthClient(pc).Check(sctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Errorf("plaintext gRPC against the TLS server answered")
	}
}

// TestTokenWithoutTLS: the token alone, over plain HTTP and gRPC (loopback).
func TestTokenWithoutTLS(t *testing.T) {
	const token = "plain-token"
	s, base, gaddr := startServer(t, Options{Token: token})
	rng := mrand.New(mrand.NewSource(time.Now().UnixNano()))
	cube := cubeOf(randomFrame(rng, 32, 32, s.Scorer().Bands))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, server := range []string{base, "grpc://" + gaddr} {
		for _, tok := range []string{token, "", "Plain-token"} {
			c, err := client.DialWith(server, client.Options{Token: tok})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Score(ctx, cube, false)
			c.Close()
			if (err == nil) != (tok == token) {
				t.Errorf("%s with token %q: %v", server, tok, err)
			}
		}
	}
}

// TestWarnExposedWithoutToken: a server on all interfaces without a token warns at start;
// on loopback, or with a token, it does not.
func TestWarnExposedWithoutToken(t *testing.T) {
	for _, c := range []struct {
		addr, token string
		warn        bool
	}{{"0.0.0.0:0", "", true}, {"127.0.0.1:0", "", false}, {"0.0.0.0:0", "tok", false}} {
		var logs syncLog
		lg := logrus.New()
		lg.SetOutput(&logs)
		ctx, cancel := context.WithCancel(context.Background())
		err := ListenAndServe(ctx, Options{Run: testRun, Token: c.token, Log: lg}, c.addr, "", time.Second, func(string, string) { cancel() })
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(logs.String(), "level=warning") && strings.Contains(logs.String(), "without authentication")
		if got != c.warn {
			t.Errorf("--addr %s, token %q: warned %v, want %v\n%s", c.addr, c.token, got, c.warn, logs.String())
		}
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReadTokenFile: the trailing newline is trimmed; an empty file, one with two lines or
// spaces, and one every user may read are refused, naming --token-file.
func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	for i, c := range []struct {
		text string
		mode os.FileMode
		want string // the token, or the error's words
		ok   bool
	}{
		{"tok\n", 0o600, "tok", true}, {"tok\r\n", 0o600, "tok", true}, {"tok", 0o640, "tok", true}, {"tok", 0o440, "tok", true},
		{"tok\n", 0o644, "readable by other users", false}, {"tok\n", 0o602, "readable by other users", false},
		{"", 0o600, "empty", false}, {"\n\n", 0o600, "empty", false}, {"a\nb\n", 0o600, "one line", false}, {"a b\n", 0o600, "one line", false},
	} {
		p := filepath.Join(dir, fmt.Sprintf("token%d", i))
		if err := os.WriteFile(p, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil {
			t.Fatal(err)
		}
		tok, err := ReadTokenFile(p)
		switch {
		case c.ok && (err != nil || tok != c.want):
			t.Errorf("%q mode %o: %q %v, want %q", c.text, c.mode, tok, err, c.want)
		case !c.ok && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--token-file "+p)):
			t.Errorf("%q mode %o: %q %v, want an error naming --token-file and saying %q", c.text, c.mode, tok, err, c.want)
		}
	}
}
