package source

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/certsync/certsync/service/store"
)

// ActiveStore is the part of store.Store an Imported source reads.
type ActiveStore interface {
	ActiveSourceCertificate(ctx context.Context, connection string) (*store.SourceCertificate, error)
}

// Imported is the certificate an operator imported for the connection and
// marked Active (certsyncctl import NAME FILE --active, or the
// ImportSourceCertificate RPC): IPS has no API that downloads it, so the
// store keeps each imported version and this reads the Active one.
type Imported struct {
	Store ActiveStore
	// Connection is the connection id (not the resource name).
	Connection string
}

// Active implements Source.
func (s *Imported) Active(ctx context.Context) (*x509.Certificate, error) {
	where := "imported certificates of connection " + s.Connection
	if s.Store == nil {
		return nil, &Error{Where: where, Message: "no store is configured to keep imported certificates"}
	}
	v, err := s.Store.ActiveSourceCertificate(ctx, s.Connection)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, &Error{Where: where, Message: fmt.Sprintf(
			"no active certificate imported yet: run certsyncctl import %s FILE --active with the certificate IPS shows as Active (IPS > Outbound Certificate)", s.Connection)}
	case err != nil:
		return nil, &Error{Where: where, Message: fmt.Sprintf("cannot read the active imported certificate: %v", err), Transient: true}
	}
	c, err := x509.ParseCertificate(v.DER)
	if err != nil {
		// Imports are parsed before they are stored; this is damage.
		return nil, &Error{Where: where, Message: fmt.Sprintf("the active imported certificate (version %s) does not parse: %v", v.ID, err)}
	}
	return c, nil
}
