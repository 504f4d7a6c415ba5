package gate

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/ipsjobs"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/source"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// Evidence is everything one gathering found about a connection. The checks
// are pure functions of it (see Decide), so that tests can feed synthetic
// evidence and the cache can hold one value per connection.
type Evidence struct {
	// Connection is the connection's id.
	Connection string
	// CheckedAt is when the gathering started: the time every condition is
	// judged at, so that the same evidence always yields the same verdict.
	CheckedAt time.Time
	// Config is the connection's configuration (URL, probe identity, pins).
	Config config.Connection
	// ConfigWarnings are the configuration's warnings for this connection.
	ConfigWarnings []string

	// Source is IPS's active certificate; nil with SourceErr when it could
	// not be read.
	Source    *x509cert.Summary
	SourceErr error

	// RegistryConfigured is false when the connection has no way to read
	// SF's mappings (neither a registry nor a person's records).
	RegistryConfigured bool
	// RegistryErr is why SF's mappings could not be listed.
	RegistryErr error
	// Comparison is set when the mappings were read.
	Comparison *compare.Comparison

	// Probe is the SCIM probe's answer; nil when the connection has no
	// prober.
	Probe *scim.Result
	// ProbeCert is the certificate the probe presents; nil with
	// ProbeCertErr when it could not be read.
	ProbeCert    *x509cert.Summary
	ProbeCertErr error

	// Running is the id of a running re-registration of the connection.
	Running string
	// RunningAutomatic says that certsync started it itself (automatic
	// remediation), as far as the gathering could tell.
	RunningAutomatic bool
	// LastReregistration is the connection's latest finished
	// re-registration, if any.
	LastReregistration *Reregistration

	// IPSJob is IPS's latest READ job that certsync knows of, asked only
	// when the probe uses a separate identity (then it is the evidence for
	// IPS's own mapping); nil when there is none or nobody asked.
	IPSJob *store.JobRecord
}

// Reregistration is how a finished re-registration ended.
type Reregistration struct {
	// ID is the operation's id.
	ID string
	// State is "SUCCEEDED", "FAILED", "ROLLED_BACK" or "CANCELLED".
	State string
	Ended time.Time
	// Automatic says that certsync started it itself, for Reason.
	Automatic bool
	Reason    string
}

// ProbePresentsSource reports a probe that presented IPS's own active
// certificate: only then does SF's answer to it speak for IPS's mapping.
func (ev *Evidence) ProbePresentsSource() bool {
	return ev.Probe != nil && ev.Config.Probe.Identity != "separate" &&
		ev.ProbeCert != nil && ev.Source != nil && !ev.probeCertNotActive()
}

// probeCertNotActive reports a probe certificate known to differ from IPS's
// known active one (not given the renewed certificate yet, or a separate
// identity's own).
func (ev *Evidence) probeCertNotActive() bool {
	return ev.ProbeCert != nil && ev.Source != nil && ev.ProbeCert.SHA256 != ev.Source.SHA256
}

// Complete reports whether the gathering reached everything it asked. An
// incomplete gathering (SF or the registry unreachable, an answer nobody
// understands) is kept to explain an INCONCLUSIVE verdict, but never
// satisfies a later caller as if it were good evidence: the next caller
// gathers again, within the budget.
func (ev *Evidence) Complete() bool {
	if ev == nil || ev.RegistryErr != nil || ev.Probe == nil || source.IsTransient(ev.SourceErr) {
		return false
	}
	switch ev.Probe.Outcome {
	case scim.Unreachable, scim.UnexpectedResponse, scim.OutcomeUnspecified:
		return false
	}
	return true
}

// collect gathers a connection's evidence: the probe runs concurrently with
// the source read, the registry read and the comparison, since each of them
// waits on a network.
func (g *Gate) collect(ctx context.Context, c *inventory.Connection, start time.Time) *Evidence {
	ev := &Evidence{
		Connection:         c.Config.ID,
		CheckedAt:          start,
		Config:             c.Config,
		ConfigWarnings:     c.Warnings,
		RegistryConfigured: c.Mappings != nil,
	}
	var probe *scim.Result
	probed := make(chan struct{})
	if c.Prober != nil {
		go func() {
			defer close(probed)
			r := c.Prober.Probe(ctx)
			probe = &r
		}()
	} else {
		close(probed)
	}

	r := c.Read(ctx, start, g.policy.Expiry.Warning)
	ev.SourceErr, ev.RegistryErr, ev.Comparison = r.SourceErr, r.RegistryErr, r.Comparison
	if r.Source != nil {
		s := x509cert.Summarize(r.Source)
		ev.Source = &s
	}
	ev.ProbeCert, ev.ProbeCertErr = readCertificate(c.Config.Probe.CertFile)
	if ops := g.o.Operations; ops != nil {
		ev.Running, _ = ops.Activity(ctx, c.Config.ID)
		if ev.Running != "" {
			if op, err := ops.Get(ctx, ev.Running); err == nil {
				ev.RunningAutomatic = op.Automatic
			}
		}
		if op := ops.LastReregistration(ctx, c.Config.ID); op != nil {
			ev.LastReregistration = &Reregistration{ID: op.ID, State: string(op.State), Ended: op.EndTime, Automatic: op.Automatic, Reason: op.Reason}
		}
	}
	// The READ job speaks for IPS's own mapping whenever the probe does not
	// present IPS's active certificate: a separate identity, or IPS's key
	// pair not given the renewed certificate yet.
	if (c.Config.Probe.Identity == "separate" || ev.probeCertNotActive()) && g.o.Jobs != nil {
		var client ipsjobs.Client
		if c.IPS != nil {
			client = c.IPS
		}
		job, err := g.o.Jobs.LatestRead(ctx, client, c.Config.ID)
		if err != nil {
			g.log.Warn("read IPS job evidence", "connection", c.Config.ID, "err", err)
		}
		ev.IPSJob = job
	}
	<-probed
	ev.Probe = probe
	return ev
}

// maxProbeCertBytes bounds the probe certificate file, read whole.
const maxProbeCertBytes = 1 << 20

// readCertificate reads the probe's certificate: the first CERTIFICATE
// block of a PEM file (which may also hold the chain or, as
// tls.LoadX509KeyPair allows, the key, which is skipped unread), or DER.
// It is read at each gathering so that a rotated probe certificate is
// judged as it is now.
func readCertificate(path string) (*x509cert.Summary, error) {
	if path == "" {
		return nil, errors.New("no probe certificate is configured")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read the probe certificate %s: %w", path, err)
	}
	if len(data) > maxProbeCertBytes {
		return nil, fmt.Errorf("the probe certificate %s is larger than %d bytes", path, maxProbeCertBytes)
	}
	der := data
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			der = b.Bytes
			break
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("the probe certificate %s holds no readable certificate", path)
	}
	s := x509cert.Summarize(cert)
	return &s, nil
}
