package ips

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certsync/certsync/service/pki"
)

// mtlsTenant is a tenant that requires a client certificate issued by its CA
// and answers with the certificate's subject.
func mtlsTenant(t *testing.T) (*tenant, *pki.CA) {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("test IAS CA", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.Issue(pki.LeafOptions{
		Subject: pkix.Name{CommonName: "localhost"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("certificate auth sent Authorization")
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"jobId":"job-1","status":%q}`, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = tlsConfigFor(srvLeaf.TLSCertificate())
	srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	srv.TLS.ClientCAs = pool
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &tenant{srv: srv, roots: pool}, ca
}

func TestClientCertificateFromPKCS12(t *testing.T) {
	tn, ca := mtlsTenant(t)
	now := time.Now()
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ias-admin"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	const password = "p12-password-never-shown"
	for _, enc := range []struct {
		name string
		enc  *pkcs12.Encoder
		with []*x509.Certificate
	}{
		{"Modern2023 (PBES2, AES-256, SHA-256 MAC)", pkcs12.Modern2023, nil},
		{"Modern2023 with chain", pkcs12.Modern2023, []*x509.Certificate{ca.Cert}},
		{"Modern2026 (PBMAC1)", pkcs12.Modern2026, nil},
		{"LegacyDES", pkcs12.LegacyDES, nil},
	} {
		t.Run(enc.name, func(t *testing.T) {
			pfx, err := enc.enc.Encode(leaf.Key, leaf.Cert, enc.with, password)
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Config{
				BaseURL:            tn.srv.URL,
				Method:             ClientCertificate,
				PKCS12File:         writeFile(t, "admin.p12", pfx),
				PKCS12PasswordFile: writeFile(t, "admin.p12.password", []byte(password+"\r\n")),
				RootCAs:            tn.roots,
			})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			job, err := c.StartJob(context.Background(), "sys-1", JobRead)
			if err != nil || job.Status != "ias-admin" {
				t.Fatalf("StartJob: %+v %v", job, err)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		pfx, err := pkcs12.Modern2023.Encode(leaf.Key, leaf.Cert, nil, password)
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(Config{BaseURL: tn.srv.URL, Method: ClientCertificate,
			PKCS12File: writeFile(t, "a.p12", pfx), PKCS12PasswordFile: writeFile(t, "pw", []byte("wrong"))})
		if err == nil || !strings.Contains(err.Error(), "wrong password") || strings.Contains(err.Error(), password) {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("certificate the tenant does not trust", func(t *testing.T) {
		other, err := pki.NewCA("other CA", now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		stranger, err := other.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "stranger"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		pfx, err := pkcs12.Modern2023.Encode(stranger.Key, stranger.Cert, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{BaseURL: tn.srv.URL, Method: ClientCertificate, PKCS12File: writeFile(t, "s.p12", pfx), RootCAs: tn.roots, Attempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		w := &waits{}
		c.sleep = w.sleep
		_, err = c.StartJob(context.Background(), "sys-1", JobRead)
		var e *Error
		if err == nil || !asError(err, &e) || e.MayHaveStarted {
			t.Fatalf("err %#v", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("key of another certificate", func(t *testing.T) {
		other, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "other"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		// The encoder stores what it is given: leaf's certificate with
		// other's key.
		pfx, err := pkcs12.Modern2023.Encode(other.Key, leaf.Cert, nil, "pw")
		if err != nil {
			t.Skipf("the encoder refuses mismatched pairs: %v", err)
		}
		_, err = New(Config{BaseURL: tn.srv.URL, Method: ClientCertificate, PKCS12File: writeFile(t, "m.p12", pfx), PKCS12PasswordFile: writeFile(t, "pw", []byte("pw"))})
		if err == nil || !strings.Contains(err.Error(), "does not belong") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestTLSTrustFailureIsPermanent(t *testing.T) {
	tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {})
	c, waits := tn.client(t, Basic, func(cfg *Config) { cfg.RootCAs = x509.NewCertPool() })
	_, err := c.JobStatus(context.Background(), "job-1")
	var e *Error
	if !asError(err, &e) || e.Transient || !strings.Contains(e.Message, "not trusted") || len(waits.all()) != 0 {
		t.Fatalf("err %#v, waits %v", err, waits.all())
	}
}

func asError(err error, e **Error) bool {
	for err != nil {
		if x, ok := err.(*Error); ok {
			*e = x
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestSecretsStayOutOfFormatting checks that printing a Client shows no
// secret.
func TestSecretsStayOutOfFormatting(t *testing.T) {
	ts := &tokenServer{expiresIn: "3600"}
	tn := newTenant(t, ts.handler(t))
	c, _ := tn.client(t, OAuth2ClientCredentials, nil)
	if _, err := c.JobStatus(context.Background(), "job-1"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v %s", c, c, c.secret, c.token)
	if strings.Contains(buf.String(), testSecret) || strings.Contains(buf.String(), "token-1") {
		t.Errorf("formatting shows a secret: %s", buf.String())
	}
}
