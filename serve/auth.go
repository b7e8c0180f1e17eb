package serve

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Authentication (--token-file): every request must carry "Authorization: Bearer TOKEN"
// (HTTP header, or gRPC metadata "authorization"), compared in constant time. Left open:
// /healthz and /readyz (orchestrators probe them without credentials; they say only
// "ok"/"ready") and the gRPC health service. Protected: scoring, /metrics (request counts,
// timings and the model's device), the live page and /v1/live (the last frames' anomaly
// maps are the customers' data) and pprof. A browser cannot add the header to the live page
// by itself: put an authenticating proxy in front, or use an SSH tunnel to a loopback server
// without a token.
//
// The check is made before a request's body is read: over HTTP in a handler wrapped around
// the mux, over gRPC in the transport's tap (before the stream is created and its message
// received), with interceptors behind it as a second line.

// tokenOK says whether an Authorization value carries the token (constant time in the
// token's contents).
func tokenOK(header, token string) bool {
	const prefix = "bearer "
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	got := strings.TrimSpace(header[len(prefix):])
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// openPath: the HTTP paths answered without a token.
func openPath(p string) bool { return p == "/healthz" || p == "/readyz" }

// requireToken wraps h: requests without the token get 401 before anything else is done.
func requireToken(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !openPath(r.URL.Path) && !tokenOK(r.Header.Get("Authorization"), token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spectraclip"`)
			if r.Header.Get("Authorization") == "" {
				http.Error(w, "unauthorized: this server requires 'Authorization: Bearer TOKEN' (serve --token-file)", http.StatusUnauthorized)
			} else {
				http.Error(w, "unauthorized: wrong token", http.StatusUnauthorized)
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

// grpcOpenMethod: the gRPC methods answered without a token (the health service).
func grpcOpenMethod(full string) bool {
	return strings.HasPrefix(full, "/grpc.health.v1.Health/")
}

func grpcTokenErr(md metadata.MD, token string) error {
	v := md.Get("authorization")
	if len(v) == 0 {
		return status.Error(codes.Unauthenticated, "unauthenticated: this server requires metadata 'authorization: Bearer TOKEN' (serve --token-file)")
	}
	if len(v) != 1 || !tokenOK(v[0], token) {
		return status.Error(codes.Unauthenticated, "unauthenticated: wrong token")
	}
	return nil
}

// grpcAuth are the server options that enforce the token: the tap (before the message is
// received) and interceptors.
func grpcAuth(token string) []grpc.ServerOption {
	check := func(ctx context.Context, method string) error {
		if grpcOpenMethod(method) {
			return nil
		}
		md, _ := metadata.FromIncomingContext(ctx)
		return grpcTokenErr(md, token)
	}
	return []grpc.ServerOption{
		grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
			if grpcOpenMethod(info.FullMethodName) {
				return ctx, nil
			}
			return ctx, grpcTokenErr(info.Header, token)
		}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// exposed says whether addr (host:port) listens beyond this machine: an empty host,
// 0.0.0.0, ::, or any address that is not loopback.
func exposed(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
