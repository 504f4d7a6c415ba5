package source

import (
	"context"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/pki"
)

func TestFileIsReReadWhenItChanges(t *testing.T) {
	ca, err := pki.NewCA("IPS", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *pki.Leaf {
		l, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ips.crt")
	first, second := issue(), issue()
	if err := os.WriteFile(path, pki.CertPEM(first.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	f := NewFile(path)
	ctx := context.Background()
	got, err := f.Active(ctx)
	if err != nil || !got.Equal(first.Cert) {
		t.Fatalf("first read: %v", err)
	}

	// A new download replaces the file the way Kubernetes updates a secret:
	// a new file renamed over the old one.
	tmp := filepath.Join(dir, "new.crt")
	if err := os.WriteFile(tmp, pki.CertPEM(second.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	got, err = f.Active(ctx)
	if err != nil || !got.Equal(second.Cert) {
		t.Fatalf("after the change: %v, same as second: %v", err, got != nil && got.Equal(second.Cert))
	}

	if err := os.WriteFile(path, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Active(ctx); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("garbage file: %v", err)
	}
	os.Remove(path)
	if _, err := f.Active(ctx); err == nil || !strings.Contains(err.Error(), "cannot read IPS's certificate") {
		t.Fatalf("missing file: %v", err)
	}
}
