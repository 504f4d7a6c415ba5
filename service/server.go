// Package service holds certsync's gRPC layer: thin handlers that validate
// requests, call the domain packages below, and turn their results into API
// messages and their errors into statuses (in one place, status.go).
package service

import (
	"context"
	"encoding/base64"
	"log/slog"
	"sort"
	"strings"
	"time"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/metrics"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

const defaultPageSize = 50

// Options are what a Server needs; every dependency is passed in here.
type Options struct {
	// Inventory holds the connections with their clients; nil means none.
	Inventory *inventory.Inventory
	// Gate answers CheckGate and WatchGate; nil leaves them UNIMPLEMENTED.
	Gate *gate.Gate
	// Operations runs re-registrations; nil leaves them UNIMPLEMENTED.
	Operations *reregister.Manager
	// Metrics counts gate answers; nil: none.
	Metrics *metrics.Metrics
	// Store keeps the audit log; nil: no audit (and no audit RPCs).
	Store  store.Store
	Logger *slog.Logger
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// Server implements certsync.v1.CertSyncService.
type Server struct {
	certsyncv1.UnimplementedCertSyncServiceServer

	log     *slog.Logger
	now     func() time.Time
	inv     *inventory.Inventory
	gate    *gate.Gate
	ops     *reregister.Manager
	metrics *metrics.Metrics
	st      store.Store
	jobs    lastJobs
}

var errNoStore = fault.New(fault.Unimplemented, "NO_STORE", "this server runs without a store: the audit log is not available")

// New builds a Server.
func New(o Options) *Server {
	s := &Server{log: o.Logger, now: o.Now, inv: o.Inventory, gate: o.Gate, ops: o.Operations, metrics: o.Metrics, st: o.Store}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.inv == nil {
		s.inv = &inventory.Inventory{}
	}
	return s
}

// lookup finds a connection by resource name.
func (s *Server) lookup(name string) (*inventory.Connection, error) {
	id, v := connectionID("name", name)
	if v != nil {
		return nil, fault.Invalid(v.Field, v.Reason, "%s", v.Description)
	}
	c, ok := s.inv.Get(id)
	if !ok {
		return nil, fault.New(fault.NotFound, "CONNECTION_NOT_FOUND", "connection %q is not configured; ListConnections shows those that are", connectionPrefix+id).With("connection", connectionPrefix+id)
	}
	return c, nil
}

// ListConnections implements certsync.v1.CertSyncService.
func (s *Server) ListConnections(ctx context.Context, req *certsyncv1.ListConnectionsRequest) (*certsyncv1.ListConnectionsResponse, error) {
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	all := s.inv.All()
	size := pageSize(req.GetPageSize())
	start := sort.Search(len(all), func(i int) bool { return all[i].Config.ID > after })
	resp := &certsyncv1.ListConnectionsResponse{TotalSize: int32(len(all))}
	// A caller limited to some connections sees only those.
	id := callerIdentity(ctx)
	visible := all
	if id.Scoped() {
		visible = nil
		for _, c := range all {
			if id.MayAccess(c.Config.ID) {
				visible = append(visible, c)
			}
		}
		start = sort.Search(len(visible), func(i int) bool { return visible[i].Config.ID > after })
		resp.TotalSize = int32(len(visible))
	}
	end := min(start+size, len(visible))
	for _, c := range visible[start:end] {
		resp.Connections = append(resp.Connections, s.connection(c))
	}
	if end < len(visible) {
		resp.NextPageToken = encodePageToken(visible[end-1].Config.ID)
	}
	return resp, nil
}

// GetConnection implements certsync.v1.CertSyncService.
func (s *Server) GetConnection(ctx context.Context, req *certsyncv1.GetConnectionRequest) (*certsyncv1.GetConnectionResponse, error) {
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	return &certsyncv1.GetConnectionResponse{Connection: s.connection(c)}, nil
}

// connection is a connection with its latest verdict, read from the gate's
// cache: listing connections never starts a probe.
func (s *Server) connection(c *inventory.Connection) *certsyncv1.Connection {
	p := connectionProto(c)
	if s.gate != nil {
		if v, ok := s.gate.Latest(c.Config.ID); ok {
			p.LatestVerdict = verdictSummaryProto(v)
		}
	}
	return p
}

// InspectCertificate implements certsync.v1.CertSyncService.
func (s *Server) InspectCertificate(ctx context.Context, req *certsyncv1.InspectCertificateRequest) (*certsyncv1.InspectCertificateResponse, error) {
	certs, err := x509cert.Parse(req.GetData(), x509cert.DefaultLimits)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	now := s.now()
	resp := &certsyncv1.InspectCertificateResponse{}
	for _, c := range certs {
		resp.Certificates = append(resp.Certificates, summaryProto(x509cert.Summarize(c), now))
	}
	return resp, nil
}

// DiagnoseJobError implements certsync.v1.CertSyncService.
func (s *Server) DiagnoseJobError(ctx context.Context, req *certsyncv1.DiagnoseJobErrorRequest) (*certsyncv1.DiagnoseJobErrorResponse, error) {
	res, err := diagnose.DiagnoseJobError(req.GetText())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	resp := &certsyncv1.DiagnoseJobErrorResponse{TenantId: res.TenantID, Summary: res.Summary}
	for _, f := range res.Findings {
		resp.Findings = append(resp.Findings, findingProto(f))
	}
	return resp, nil
}

func pageSize(n int32) int {
	switch {
	case n <= 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return int(n)
}

// Page tokens are opaque to callers; inside they carry the last key served,
// so that paging stays stable while items are added.
const pageTokenPrefix = "after:"

func encodePageToken(after string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + after))
}

func decodePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(b), pageTokenPrefix) {
		return "", fault.Invalid("page_token", "INVALID_PAGE_TOKEN", "page_token is not one this server issued; start again with an empty page_token")
	}
	return strings.TrimPrefix(string(b), pageTokenPrefix), nil
}
