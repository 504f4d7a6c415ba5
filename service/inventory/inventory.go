// Package inventory turns the configured connections into live ones: each
// with its certificate source, its registry driver and its SCIM prober. It
// is the one place where configuration becomes clients.
package inventory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/ips"
	"github.com/certsync/certsync/service/registry"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/source"
	"github.com/certsync/certsync/service/store"
)

// Connection is one configured connection with its clients.
type Connection struct {
	Config   config.Connection
	Warnings []string
	Source   source.Source
	// Registry changes SF's mappings; nil for the manual driver, whose
	// steps a person performs.
	Registry registry.Driver
	// Mappings reads SF's mappings: the registry itself, or for the manual
	// driver what a person last recorded.
	Mappings registry.Lister
	Prober   *scim.Prober
	// IPS is the Tenant Admin API client; nil when not configured.
	IPS *ips.Client
}

// Manual reports whether a person performs the connection's changes in
// SF's UI (registry driver manual).
func (c *Connection) Manual() bool { return c.Config.Registry.Driver == "manual" }

// Name is the connection's resource name.
func (c *Connection) Name() string { return "connections/" + c.Config.ID }

// Options tune the clients.
type Options struct {
	ProbeTimeout time.Duration
	// RegistryTimeout bounds each registry call attempt; 0 means 10s.
	RegistryTimeout time.Duration
	UserAgent       string
	// OnProbe, when set, sees every probe of every connection (metrics).
	OnProbe func(connID string, r scim.Result)
	// Store keeps the certificates imported for connections whose
	// source.type is "imported", and what a person recorded of SF's
	// mappings for the manual registry driver; required for them.
	Store store.Store
}

// Inventory holds the live connections, sorted by id.
type Inventory struct {
	list []*Connection
	byID map[string]*Connection
}

// Build creates the clients of every connection. The configuration must have
// been validated; on failure everything already built is closed.
func Build(conns []config.Connection, problems config.Problems, o Options) (inv *Inventory, err error) {
	inv = &Inventory{byID: map[string]*Connection{}}
	defer func() {
		if err != nil {
			inv.Close()
			inv = nil
		}
	}()
	for _, cfg := range conns {
		c, err := build(cfg, o)
		if err != nil {
			return inv, fmt.Errorf("connection %s: %w", cfg.ID, err)
		}
		prefix := "connections[" + cfg.ID + "]."
		for _, p := range problems.Warnings().ForField(prefix) {
			c.Warnings = append(c.Warnings, p.Field[len(prefix):]+": "+p.Message)
		}
		inv.list = append(inv.list, c)
		inv.byID[cfg.ID] = c
	}
	sort.Slice(inv.list, func(i, j int) bool { return inv.list[i].Config.ID < inv.list[j].Config.ID })
	return inv, nil
}

func build(cfg config.Connection, o Options) (*Connection, error) {
	c := &Connection{Config: cfg}
	sfRoots, err := loadPool(cfg.SF.CAFile)
	if err != nil {
		return nil, fmt.Errorf("sf.ca_file: %w", err)
	}
	switch cfg.Source.Type {
	case "file":
		c.Source = source.NewFile(cfg.Source.File)
	case "sandbox":
		roots, err := loadPool(cfg.Source.CAFile)
		if err != nil {
			return nil, fmt.Errorf("source.ca_file: %w", err)
		}
		s, err := source.NewHTTP(cfg.Source.URL, roots, o.ProbeTimeout)
		if err != nil {
			return nil, err
		}
		c.Source = s
	case "imported":
		if o.Store == nil {
			return nil, errors.New("source.type imported needs the store, which keeps the imported certificates")
		}
		c.Source = &source.Imported{Store: o.Store, Connection: cfg.ID}
	default:
		return nil, fmt.Errorf("source.type %q", cfg.Source.Type)
	}
	if cfg.Registry.Driver == "http" {
		roots, err := loadPool(cfg.Registry.CAFile)
		if err != nil {
			return nil, fmt.Errorf("registry.ca_file: %w", err)
		}
		d, err := registry.NewHTTP(registry.HTTPConfig{BaseURL: cfg.Registry.URL, TokenFile: cfg.Registry.TokenFile, RootCAs: roots, Timeout: o.RegistryTimeout})
		if err != nil {
			return nil, err
		}
		c.Registry, c.Mappings = d, d
	}
	if cfg.Registry.Driver == "manual" {
		m := &registry.Manual{Connection: cfg.ID}
		if o.Store != nil {
			m.Records = o.Store
		}
		c.Mappings = m
	}
	pair, err := tls.LoadX509KeyPair(cfg.Probe.CertFile, cfg.Probe.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	var observe func(scim.Result)
	if o.OnProbe != nil {
		observe = func(r scim.Result) { o.OnProbe(cfg.ID, r) }
	}
	p, err := scim.New(scim.Config{
		BaseURL: cfg.SF.URL, CompanyID: cfg.SF.CompanyID, Certificate: pair, RootCAs: sfRoots,
		Timeout: o.ProbeTimeout, UserAgent: o.UserAgent, Observe: observe,
	})
	if err != nil {
		return nil, err
	}
	c.Prober = p
	if i := cfg.IPS; i.BaseURL != "" {
		method, err := ips.ParseAuthMethod(i.Auth)
		if err != nil {
			return nil, fmt.Errorf("ips.auth: %w", err)
		}
		roots, err := loadPool(i.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ips.ca_file: %w", err)
		}
		cl, err := ips.New(ips.Config{BaseURL: i.BaseURL, Method: method, ClientID: i.ClientID, ClientSecretFile: i.ClientSecretFile,
			PKCS12File: i.PKCS12File, PKCS12PasswordFile: i.PKCS12PasswordFile, RootCAs: roots})
		if err != nil {
			return nil, fmt.Errorf("ips: %w", err)
		}
		c.IPS = cl
	}
	return c, nil
}

// loadPool reads a CA bundle; an empty path means the system's pool (nil).
func loadPool(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New(path + " holds no PEM certificate")
	}
	return pool, nil
}

// All returns the connections sorted by id.
func (inv *Inventory) All() []*Connection { return inv.list }

// Get returns a connection by id.
func (inv *Inventory) Get(id string) (*Connection, bool) {
	c, ok := inv.byID[id]
	return c, ok
}

// Close releases the clients' idle connections.
func (inv *Inventory) Close() {
	if inv == nil {
		return
	}
	for _, c := range inv.list {
		if c.Prober != nil {
			c.Prober.Close()
		}
		if c.IPS != nil {
			c.IPS.Close()
		}
		if cl, ok := c.Registry.(interface{ Close() }); ok {
			cl.Close()
		}
		if cl, ok := c.Source.(interface{ Close() }); ok {
			cl.Close()
		}
	}
}

// Reading is what one look at both sides of a connection found.
type Reading struct {
	// Source is IPS's active certificate; nil with SourceErr when it could
	// not be read.
	Source    *x509.Certificate
	SourceErr error
	// RegistryErr says why SF's mappings could not be read (for the manual
	// driver, registry.ErrNotRecorded until a person recorded them);
	// Comparison is nil then.
	RegistryErr error
	Comparison  *compare.Comparison
}

// Read reads IPS's active certificate and SF's mappings and compares them:
// the one way the handlers, the gate and re-registration look at a
// connection. A source that cannot be read is part of the comparison
// (SOURCE_MISSING); a registry that cannot be read leaves no comparison,
// since nothing can be said about SF's side.
func (c *Connection) Read(ctx context.Context, now time.Time, expiryWarning time.Duration) Reading {
	var r Reading
	if c.Source == nil {
		r.SourceErr = errors.New("no certificate source is configured")
	} else if r.Source, r.SourceErr = c.Source.Active(ctx); r.Source == nil && r.SourceErr == nil {
		r.SourceErr = errors.New("the source returned no certificate")
	}
	if c.Mappings == nil {
		r.RegistryErr = errors.New("no registry driver is configured")
		return r
	}
	mappings, err := c.Mappings.List(ctx)
	if err != nil {
		r.RegistryErr = err
		return r
	}
	cmp := compare.Compare(compare.Input{
		Source: r.Source, SourceErr: r.SourceErr, Mappings: mappings, Now: now,
		PinnedSubject: c.Config.PinnedSubject, PinnedIssuer: c.Config.PinnedIssuer,
		ExpiryWarning: expiryWarning,
	})
	r.Comparison = &cmp
	return r
}
