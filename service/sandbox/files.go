package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/pki"
)

// WriteFiles writes into dir (created 0700) the CA bundle, each connection's
// probe certificate and key (its IPS system's Active slot: probe identity
// "ips", the very key pair IPS would use), its registry token and its IAS
// tenant's credentials (see IPSSettings), and returns the configuration that
// reaches the sandbox. It needs Start first, since the URLs carry the
// listeners' ports. Paths are absolute, so the configuration means the same
// wherever it is read from.
func (s *Sandbox) WriteFiles(dir string) ([]config.Connection, error) {
	addr, plainAddr := s.Addr(), s.PlainAddr()
	if addr == "" {
		return nil, errors.New("sandbox: WriteFiles needs Start first (the URLs carry the ports)")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	// MkdirAll keeps an existing directory's mode; keys go in here.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := writeFileAtomic(caFile, s.caPEM, 0o644); err != nil {
		return nil, err
	}

	type item struct {
		id, description, sentCompanyID, systemID, token string
		plainHost                                       bool
		leaf                                            *pki.Leaf
	}
	s.mu.Lock()
	items := make([]item, 0, len(s.order))
	for _, id := range s.order {
		c := s.conns[id]
		it := item{id: c.id, description: c.description, sentCompanyID: c.sentCompanyID, systemID: c.system.id, token: c.token, plainHost: c.plainHost}
		if a := c.system.activeSlot(); a != nil {
			it.leaf = a.leaf
		}
		items = append(items, it)
	}
	s.mu.Unlock()

	var out []config.Connection
	for _, it := range items {
		if it.leaf == nil {
			return nil, fmt.Errorf("sandbox: connection %s: IPS system %s has no active certificate", it.id, it.systemID)
		}
		certFile := filepath.Join(dir, it.id+"-probe.crt")
		keyFile := filepath.Join(dir, it.id+"-probe.key")
		tokenFile := filepath.Join(dir, it.id+"-registry.token")
		keyPEM, err := pki.KeyPEM(it.leaf.Key)
		if err != nil {
			return nil, fmt.Errorf("sandbox: connection %s: encode key: %w", it.id, err)
		}
		if err := writeFileAtomic(certFile, pki.CertPEM(it.leaf.Cert), 0o644); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
			return nil, err
		}
		// No trailing newline: a reader that forgets to trim still sends
		// the right token.
		if err := writeFileAtomic(tokenFile, []byte(it.token), 0o600); err != nil {
			return nil, err
		}
		// The IAS tenant's credentials; IPSSettings says where they are.
		if err := s.writeIPSFiles(dir, it.id, caFile); err != nil {
			return nil, err
		}
		sfAddr := addr
		if it.plainHost {
			sfAddr = plainAddr
		}
		out = append(out, config.Connection{
			ID:          it.id,
			Description: it.description,
			SF: config.SF{
				URL:       "https://" + sfAddr,
				CompanyID: it.sentCompanyID,
				CAFile:    caFile,
			},
			Source: config.Source{
				Type:   "sandbox",
				URL:    "https://" + addr + "/ips/v1/systems/" + it.systemID + "/certificates/active",
				CAFile: caFile,
			},
			Registry: config.Registry{
				Driver:          "http",
				URL:             "https://" + addr + "/registry/" + it.id,
				TokenFile:       tokenFile,
				CAFile:          caFile,
				IntegrationName: config.DefaultIntegrationName,
			},
			Probe: config.Probe{
				Identity: "ips",
				CertFile: certFile,
				KeyFile:  keyFile,
			},
		})
	}
	// Each connection reaches its simulated IAS tenant (IPS's Tenant Admin
	// API) with OAuth2 client credentials.
	for i := range out {
		st := s.IPSSettings(out[i].ID)
		out[i].IPS = config.IPS{
			TenantID: st.TenantID, SourceSystemID: st.SourceSystemID, BaseURL: st.BaseURL,
			Auth: "oauth2", ClientID: st.ClientID, ClientSecretFile: st.ClientSecretFile, CAFile: st.CAFile,
		}
	}
	s.log.Info("sandbox files written", "dir", dir, "ca_file", caFile, "connections", len(out))
	return out, nil
}

// WriteConfig writes the files into "<path>.d" and then, atomically, a
// configuration at path, so that a process waiting for path to appear (the
// crash tests, a newcomer's second terminal) never reads half a file or a
// configuration whose keys are not there yet.
func (s *Sandbox) WriteConfig(path string) error {
	conns, err := s.WriteFiles(path + ".d")
	if err != nil {
		return err
	}
	data, err := config.Marshal(&config.Config{Connections: conns})
	if err != nil {
		return fmt.Errorf("sandbox: encode configuration: %w", err)
	}
	header := fmt.Sprintf("# Written by the certsync sandbox (main %s, plain API host %s).\n"+
		"# Keys, tokens and the CA are in %s; they are valid for this sandbox run only.\n",
		s.Addr(), s.PlainAddr(), path+".d")
	return writeFileAtomic(path, append([]byte(header), data...), 0o600)
}

// writeFileAtomic writes data to a temporary file in path's directory and
// renames it over path, so readers see the old file or the new one, never a
// part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("sandbox: write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sandbox: sync %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("sandbox: close %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}
