package serve

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/spectraclip/spectraclip/serve/client"
)

// Credentials are a client's credentials for a secured server (serve --token-file,
// --tls-cert), as files: score's and loadtest's --token-file and --tls-ca.
type Credentials struct {
	TokenFile string // the bearer token, one line (ReadTokenFile); "" for none
	TLSCA     string // PEM CA certificates to trust over TLS; "" for the system's
}

// Dial connects to server (http://, https://, grpc:// or grpcs:// HOST:PORT) with the
// credentials in c's files.
func Dial(server string, c Credentials) (client.Client, error) {
	var o client.Options
	if c.TokenFile != "" {
		tok, err := ReadTokenFile(c.TokenFile)
		if err != nil {
			return nil, err
		}
		o.Token = tok
	}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca %s: %w", c.TLSCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in the file", c.TLSCA)
		}
		o.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return client.DialWith(server, o)
}
