package source

import (
	"context"
	"crypto/x509/pkix"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/store"
)

func TestImportedReadsTheActiveVersion(t *testing.T) {
	ctx := t.Context()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "certsync.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ca, err := pki.NewCA("IPS", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	issue := func() *pki.Leaf {
		t.Helper()
		l, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-outbound"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	src := &Imported{Store: st, Connection: "demo"}

	_, err = src.Active(ctx)
	var se *Error
	if !errors.As(err, &se) || !strings.Contains(se.Error(), "no active certificate imported yet: run certsyncctl import demo FILE --active") {
		t.Fatalf("nothing imported: %v", err)
	}

	old, renewed := issue(), issue()
	imp := func(l *pki.Leaf, active bool, conn string) {
		t.Helper()
		if _, err := st.ImportSourceCertificate(ctx, &store.SourceCertificate{Connection: conn, DER: l.Cert.Raw, Active: active, ImportedBy: "alice"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	imp(old, false, "demo")
	if _, err := src.Active(ctx); !errors.As(err, &se) {
		t.Fatalf("only an inactive version: %v", err)
	}
	imp(old, true, "demo")
	if got, err := src.Active(ctx); err != nil || !got.Equal(old.Cert) {
		t.Fatalf("after importing the old one as active: %v", err)
	}
	// Another connection's imports change nothing here.
	imp(renewed, true, "other")
	if got, err := src.Active(ctx); err != nil || !got.Equal(old.Cert) {
		t.Fatalf("after another connection's import: %v", err)
	}
	// IPS renewed: the new Active one takes over.
	imp(renewed, true, "demo")
	if got, err := src.Active(ctx); err != nil || !got.Equal(renewed.Cert) {
		t.Fatalf("after importing the renewal: %v", err)
	}
}

type fakeActive struct {
	v   *store.SourceCertificate
	err error
}

func (f fakeActive) ActiveSourceCertificate(context.Context, string) (*store.SourceCertificate, error) {
	return f.v, f.err
}

func TestImportedFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  *Imported
		want string
	}{
		{"no store", &Imported{Connection: "c"}, "no store is configured"},
		{"store fails", &Imported{Store: fakeActive{err: errors.New("database is locked")}, Connection: "c"}, "cannot read the active imported certificate: database is locked"},
		{"damaged", &Imported{Store: fakeActive{v: &store.SourceCertificate{ID: "v1", DER: []byte{0x30, 0x00}}}, Connection: "c"}, "(version v1) does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.src.Active(t.Context())
			var se *Error
			if c != nil || !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(se.Where, "connection c") {
				t.Errorf("Active = %v, %v; want a *source.Error with %q", c, err, tc.want)
			}
		})
	}
}
