package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTestCA writes ca.pem, and cert.pem/key.pem for 127.0.0.1 signed by that CA, into dir.
func writeTestCA(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for f, b := range map[string]*pem.Block{ca: {Type: "CERTIFICATE", Bytes: caDER}, cert: {Type: "CERTIFICATE", Bytes: der}, key: {Type: "EC PRIVATE KEY", Bytes: kb}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ca, cert, key
}

// TestServeScoreSecured (#25 item 12): serve --token-file --tls-cert --tls-key, and score
// with --token-file and --tls-ca over https:// and grpc://: scored with the token, refused
// (401, UNAUTHENTICATED) without it or with a wrong one.
func TestServeScoreSecured(t *testing.T) {
	dir, runDir, file := servableRun(t)
	ca, cert, key := writeTestCA(t, dir)
	tok, wrong := filepath.Join(dir, "token"), filepath.Join(dir, "wrong")
	os.WriteFile(tok, []byte("the-token\n"), 0o600)
	os.WriteFile(wrong, []byte("not-the-token\n"), 0o600)

	srv := startServeInProcess(t, "--run", runDir, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
		"--token-file", tok, "--tls-cert", cert, "--tls-key", key)
	m := []string{"", srv.http, srv.grpc}
	for _, server := range []string{"https://" + m[1], "grpc://" + m[2]} {
		line := mustRun(t, "score", "--server", server, "--token-file", tok, "--tls-ca", ca, file)
		if !strings.Contains(line, `"anomaly_pixels":`) {
			t.Errorf("%s: score printed %q", server, line)
		}
		for name, args := range map[string][]string{"no token": {"--tls-ca", ca}, "wrong token": {"--tls-ca", ca, "--token-file", wrong}} {
			_, err := runCLI(t, append(append([]string{"score", "--server", server}, args...), file)...)
			if err == nil || !(strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "Unauthenticated")) {
				t.Errorf("%s, %s: %v, want 401 / Unauthenticated", server, name, err)
			}
		}
		// without --tls-ca: https:// with the system's CAs does not trust the test CA,
		// grpc:// is plaintext against TLS
		if _, err := runCLI(t, "score", "--server", server, "--token-file", tok, "--timeout", "5s", file); err == nil {
			t.Errorf("%s without --tls-ca: scored; want a certificate or handshake error", server)
		}
	}
	srv.stop(t)
}
