// Package source provides IPS's active outbound certificate. IPS has no API
// that lists or downloads it, so it comes from a file (a mounted secret or a
// download from IPS > Outbound Certificate) or, in the sandbox, from the
// simulated IPS.
package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/certsync/certsync/service/x509cert"
)

// Source returns IPS's active certificate.
type Source interface {
	Active(ctx context.Context) (*x509.Certificate, error)
}

// Error says why the certificate could not be had.
type Error struct {
	Where   string
	Message string
	// Transient is set when asking again may succeed (a network error, a
	// server error, the store unreachable), as opposed to a missing or
	// broken certificate that someone must fix.
	Transient bool
}

// IsTransient reports a source error that asking again may cure.
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Transient
}

func (e *Error) Error() string { return e.Where + ": " + e.Message }

// File reads the certificate from a file and re-reads it when the file
// changes (size, modification time or, for Kubernetes secrets, the inode
// behind a symlink swap), so that a new download takes effect without a
// restart.
type File struct {
	path string

	mu      sync.Mutex
	stamp   fileStamp
	cert    *x509.Certificate
	lastErr error
}

type fileStamp struct {
	size    int64
	modTime time.Time
	ino     uint64
}

// NewFile returns a file source.
func NewFile(path string) *File { return &File{path: path} }

// Active implements Source.
func (f *File) Active(context.Context) (*x509.Certificate, error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return nil, &Error{Where: f.path, Message: fmt.Sprintf("cannot read IPS's certificate: %v", unwrapPath(err))}
	}
	stamp := fileStamp{size: st.Size(), modTime: st.ModTime(), ino: inode(st)}
	f.mu.Lock()
	defer f.mu.Unlock()
	if stamp == f.stamp && (f.cert != nil || f.lastErr != nil) {
		return f.cert, f.lastErr
	}
	f.stamp = stamp
	f.cert, f.lastErr = nil, nil
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.lastErr = &Error{Where: f.path, Message: fmt.Sprintf("cannot read IPS's certificate: %v", unwrapPath(err))}
		return nil, f.lastErr
	}
	f.cert, f.lastErr = first(f.path, data)
	return f.cert, f.lastErr
}

// first takes the first certificate of a file; IPS's download holds one.
func first(where string, data []byte) (*x509.Certificate, error) {
	certs, err := x509cert.Parse(data, x509cert.DefaultLimits)
	if err != nil {
		return nil, &Error{Where: where, Message: err.Error()}
	}
	return certs[0], nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// HTTP fetches the certificate from a URL answering PEM, as the sandbox's
// simulated IPS does.
type HTTP struct {
	url    string
	client *http.Client
}

// NewHTTP returns an HTTP source; rootCAs nil means the system pool.
func NewHTTP(rawURL string, rootCAs *x509.CertPool, timeout time.Duration) (*HTTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("source: %q is not an https URL", rawURL)
	}
	t := &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: rootCAs},
	}
	return &HTTP{url: rawURL, client: &http.Client{Transport: t, Timeout: timeout}}, nil
}

// Active implements Source.
func (h *HTTP) Active(ctx context.Context) (*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, &Error{Where: h.url, Message: err.Error()}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err // the URL is in the message already
		}
		return nil, &Error{Where: h.url, Message: fmt.Sprintf("cannot fetch IPS's certificate: %v", err), Transient: true}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(x509cert.DefaultLimits.MaxBytes)+1))
	if err != nil {
		return nil, &Error{Where: h.url, Message: fmt.Sprintf("cannot fetch IPS's certificate: %v", err), Transient: true}
	}
	if resp.StatusCode != http.StatusOK {
		transient := resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		return nil, &Error{Where: h.url, Message: fmt.Sprintf("IPS answered HTTP %d", resp.StatusCode), Transient: transient}
	}
	return first(h.url, data)
}

// Close drops idle connections.
func (h *HTTP) Close() { h.client.CloseIdleConnections() }
