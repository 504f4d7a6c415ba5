package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// dialOptions builds the connection's transport and call credentials from
// --cacert, --cert/--key and --token-file (or CERTSYNC_TOKEN).
func (a *app) dialOptions() ([]grpc.DialOption, error) {
	useTLS := a.cacert != "" || a.cert != "" || a.key != ""
	var opts []grpc.DialOption
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if a.cacert != "" {
			pem, err := os.ReadFile(a.cacert)
			if err != nil {
				return nil, fmt.Errorf("--cacert: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--cacert: %s holds no PEM certificate", a.cacert)
			}
			cfg.RootCAs = pool
		}
		if (a.cert == "") != (a.key == "") {
			return nil, errors.New("--cert and --key go together")
		}
		if a.cert != "" {
			pair, err := tls.LoadX509KeyPair(a.cert, a.key)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	token, err := a.token()
	if err != nil {
		return nil, err
	}
	if token != "" {
		if !useTLS && !loopback(a.addr) {
			return nil, fmt.Errorf("refusing to send a token in plain text to %s: use TLS (--cacert)", a.addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	return opts, nil
}

func (a *app) token() (string, error) {
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(os.Getenv("CERTSYNC_TOKEN")), nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer sends the token with every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that a loopback server without TLS
// can be used; dialOptions refuses plain text to anything else.
func (bearer) RequireTransportSecurity() bool { return false }
