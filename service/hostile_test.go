package service_test

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/pki"
	"github.com/certsync/certsync/service/reregister"
	"github.com/certsync/certsync/service/sandbox"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// Bounds on what a refusal may say. A status message is read by people and
// written to logs: it names the problem and never repeats a large or hostile
// input. The whole status (message and details) is bounded too, since
// BadRequest descriptions and ErrorInfo metadata are other ways to echo.
const (
	maxHostileMessage = 300
	maxHostileStatus  = 4 << 10
)

// hostileEnv is what the hostile table runs against: the sandbox's demo
// connections, re-registration on a SQLite store, and the gate, through the
// full interceptor chain over bufconn.
type hostileEnv struct {
	h *harness
	c certsyncv1.CertSyncServiceClient
	// op is a real operation (a finished dry run) for the rows that need
	// one that exists.
	op string
	// certPEM is a client certificate; keyPEM its private key, which no
	// answer may ever repeat.
	certPEM, keyPEM []byte
	certDER, keyDER []byte
	// logs is the server's log.
	logs *lockedBuffer
}

// lockedBuffer is a log destination shared by the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	sb, err := sandbox.New(sandbox.Options{Addr: "127.0.0.1:0"})
	must(t, err)
	must(t, sb.Start())
	t.Cleanup(func() { sb.Close() })
	conns, err := sb.WriteFiles(t.TempDir())
	must(t, err)
	st, err := store.Open(context.Background(), "", t.TempDir())
	must(t, err)
	t.Cleanup(func() { st.Close() })
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHarnessFull(t, conns, inventory.Options{ProbeTimeout: 5 * time.Second, RegistryTimeout: 5 * time.Second}, func(inv *inventory.Inventory) service.Options {
		m := reregister.New(reregister.Options{Store: st, Inventory: inv, SettleWindow: 2 * time.Second, ProbeInterval: 200 * time.Millisecond, Logger: log})
		t.Cleanup(m.Close)
		g := gate.New(gate.Options{Inventory: inv, Operations: m, Logger: log})
		t.Cleanup(g.Close)
		return service.Options{Operations: m, Gate: g, Store: st, Logger: log}
	})

	ca, err := pki.NewCA("hostile test CA", time.Now(), 48*time.Hour)
	must(t, err)
	leaf, err := ca.Issue(pki.LeafOptions{Subject: pkix.Name{CommonName: "ips-hostile"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)})
	must(t, err)
	keyPEM, err := pki.KeyPEM(leaf.Key)
	must(t, err)
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		t.Fatal("KeyPEM wrote no PEM")
	}
	e := &hostileEnv{h: h, c: h.client, logs: logs, certPEM: pki.CertPEM(leaf.Cert), keyPEM: keyPEM, certDER: leaf.Cert.Raw, keyDER: blk.Bytes}
	// A dry run gives an operation that exists and is done.
	r, err := h.client.ReregisterCertificate(ctx(t), &certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync", ValidateOnly: true, Reason: "hostile test"})
	must(t, err)
	if !r.GetOperation().GetDone() {
		t.Fatalf("dry run not done: %v", r.GetOperation())
	}
	e.op = r.GetOperation().GetName()
	return e
}

// keyFragments are pieces of the private key's PEM body, none of which may
// appear in any answer or log. The first 48 base64 characters are left out:
// they encode the PKCS #8 header, which every P-256 key shares.
func (e *hostileEnv) keyFragments() []string {
	var out []string
	lines := strings.Split(strings.TrimSpace(string(e.keyPEM)), "\n")
	for n, l := range lines[1 : len(lines)-1] {
		for i := 0; i+16 <= len(l); i += 16 {
			if n > 0 || i >= 48 {
				out = append(out, l[i:i+16])
			}
		}
	}
	return out
}

// hostileRow is one hostile request and the answer it must get.
type hostileRow struct {
	rpc, name string
	call      func(context.Context, *hostileEnv) error
	code      codes.Code
	// reason is the ErrorInfo reason; empty means the status carries none
	// (gRPC's own refusals: size limit, undecodable message, unimplemented
	// method).
	reason string
	// fields are the BadRequest field violations, comma-joined, in order.
	fields string
	// violation, when set, is the reason of the first field violation.
	violation string
	// bug, when set, describes a known defect that makes this row fail
	// today: the row is then expected to fail (and logged), and a row that
	// passes while marked fails, so that the marker goes once fixed.
	bug string
}

// Shorthands for the expected answers.
const (
	wantInvalid       = codes.InvalidArgument
	wantNotFound      = codes.NotFound
	wantUnimpl        = codes.Unimplemented
	wantOK            = codes.OK
	reasonBadRequest  = "INVALID_REQUEST"
	reasonConnMissing = "CONNECTION_NOT_FOUND"
	reasonOpMissing   = "OPERATION_NOT_FOUND"
)

// hostileName is a hostile value for a resource-name field and the
// BadRequest reason it gets when it is refused.
type hostileName struct {
	label, value string
	// refusal is the field violation reason; empty means the name is
	// well-formed and refers to nothing.
	refusal string
	bug     string
}

const hostileMiB = 1 << 20

var hostileConnectionNames = []hostileName{
	{"empty", "", "REQUIRED", ""},
	{"1MiB", strings.Repeat("a", hostileMiB), "INVALID_NAME", ""},
	{"1MiB prefixed", "connections/" + strings.Repeat("a", hostileMiB), "INVALID_NAME", ""},
	{"NUL", "connections/demo\x00healthy", "INVALID_NAME", ""},
	{"newline", "connections/demo-healthy\n", "INVALID_NAME", ""},
	{"escape", "connections/\x1b[31mdemo", "INVALID_NAME", ""},
	{"traversal", "connections/../../etc/passwd", "INVALID_NAME", ""},
	{"encoded traversal", "connections/%2e%2e", "INVALID_NAME", ""},
	{"encoded slash", "connections/..%2f..%2fetc%2fpasswd", "INVALID_NAME", ""},
	{"double prefix", "connections/connections/demo-healthy", "INVALID_NAME", ""},
	{"double slash", "connections//demo-healthy", "INVALID_NAME", ""},
	{"trailing slash", "connections/demo-healthy/", "INVALID_NAME", ""},
	{"leading space", " connections/demo-healthy", "INVALID_NAME", ""},
	{"query", "connections/demo-healthy?x=1", "INVALID_NAME", ""},
	{"upper case", "connections/Demo-Healthy", "INVALID_NAME", ""},
	{"upper prefix", "CONNECTIONS/demo-healthy", "INVALID_NAME", ""},
	{"wrong type", "operations/x", "INVALID_NAME", ""},
	{"64 characters", "connections/" + strings.Repeat("a", 64), "INVALID_NAME", ""},
	{"trailing hyphen", "connections/demo-", "INVALID_NAME", ""},
	{"RTL override", "connections/demo\u202ehealthy", "INVALID_NAME", ""},
	{"emoji", "connections/\U0001F600", "INVALID_NAME", ""},
	{"NFC", "connections/caf\u00e9", "INVALID_NAME", ""},
	{"NFD", "connections/cafe\u0301", "INVALID_NAME", ""},
	{"fullwidth", "connections/\uff44\uff45\uff4d\uff4f", "INVALID_NAME", ""},
	{"homoglyph", "connections/d\u0435mo-healthy", "INVALID_NAME", ""},
	{"zero width", "connections/demo-healthy\u200b", "INVALID_NAME", ""},
	{"BOM", "\ufeffconnections/demo-healthy", "INVALID_NAME", ""},
	{"max code point", "connections/\U0010FFFF", "INVALID_NAME", ""},
	{"replacement char", "connections/\uFFFD", "INVALID_NAME", ""},
	{"many emoji", strings.Repeat("\U0001F600", 100000), "INVALID_NAME", ""},
	{"many escapes", "connections/" + strings.Repeat("\x1b", 1000), "INVALID_NAME", ""},
	{"many RTL", "connections/" + strings.Repeat("\u202e", 1000), "INVALID_NAME", ""},
	{"many tag characters", "connections/" + strings.Repeat("\U000E0001", 1000), "INVALID_NAME", ""},
	{"not configured", "connections/nope", "", ""},
	{"bare, not configured", "nope", "", ""},
	{"63 characters", "connections/" + strings.Repeat("a", 63), "", ""},
}

var hostileOperationNames = []hostileName{
	{"empty", "", "REQUIRED", ""},
	{"1MiB", "operations/" + strings.Repeat("a", hostileMiB), "INVALID_NAME", ""},
	{"traversal", "operations/../x", "INVALID_NAME", ""},
	{"encoded traversal", "operations/%2e%2e", "INVALID_NAME", ""},
	{"NUL", "operations/x\x00", "INVALID_NAME", ""},
	{"newline", "operations/x\ny", "INVALID_NAME", ""},
	{"escape", "operations/\x1b[2J", "INVALID_NAME", ""},
	{"upper case", "operations/X", "INVALID_NAME", ""},
	{"wrong type", "connections/demo-healthy", "INVALID_NAME", ""},
	{"double prefix", "operations/operations/x", "INVALID_NAME", ""},
	{"64 characters", "operations/" + strings.Repeat("a", 64), "INVALID_NAME", ""},
	{"RTL override", "operations/\u202ex", "INVALID_NAME", ""},
	{"emoji", "operations/\U0001F600", "INVALID_NAME", ""},
	{"NFD", "operations/cafe\u0301", "INVALID_NAME", ""},
	{"many escapes", "operations/" + strings.Repeat("\x1b", 1000), "INVALID_NAME", ""},
	{"not there", "operations/x", "", ""},
	{"bare, not there", "x", "", ""},
}

// Calls by request; each returns only the error (streams: of the first
// message).
func callListConnections(r *certsyncv1.ListConnectionsRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.ListConnections(ctx, r); return err }
}

func callInspect(r *certsyncv1.InspectCertificateRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.InspectCertificate(ctx, r); return err }
}

func callDiagnose(r *certsyncv1.DiagnoseJobErrorRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.DiagnoseJobError(ctx, r); return err }
}

func callReregister(r *certsyncv1.ReregisterCertificateRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error {
		_, err := e.c.ReregisterCertificate(ctx, r)
		return err
	}
}

func callListOperations(r *certsyncv1.ListOperationsRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.ListOperations(ctx, r); return err }
}

func callWait(r *certsyncv1.WaitOperationRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.WaitOperation(ctx, r); return err }
}

func callCancel(r *certsyncv1.CancelOperationRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.CancelOperation(ctx, r); return err }
}

func callCheckGate(r *certsyncv1.CheckGateRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.CheckGate(ctx, r); return err }
}

func callWatchGate(r *certsyncv1.WatchGateRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := e.c.WatchGate(sctx, r)
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
}

func callImport(r *certsyncv1.ImportSourceCertificateRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error {
		_, err := e.c.ImportSourceCertificate(ctx, r)
		return err
	}
}

func callListSource(r *certsyncv1.ListSourceCertificatesRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error {
		_, err := e.c.ListSourceCertificates(ctx, r)
		return err
	}
}

func callRecord(r *certsyncv1.RecordTargetMappingRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.RecordTargetMapping(ctx, r); return err }
}

func callStartJob(r *certsyncv1.StartProvisioningJobRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.StartProvisioningJob(ctx, r); return err }
}

func callGetJob(r *certsyncv1.GetProvisioningJobRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.GetProvisioningJob(ctx, r); return err }
}

func callListAudit(r *certsyncv1.ListAuditEventsRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.ListAuditEvents(ctx, r); return err }
}

func callConfirm(r *certsyncv1.ConfirmOperationStepRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.ConfirmOperationStep(ctx, r); return err }
}

func callApprove(r *certsyncv1.ApproveOperationRequest) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error { _, err := e.c.ApproveOperation(ctx, r); return err }
}

// nameRPC is an RPC whose request names one resource in field `name`.
type nameRPC struct {
	rpc  string
	call func(ctx context.Context, e *hostileEnv, name string) error
	// missing is the answer for a well-formed name of nothing: NOT_FOUND
	// (with its reason), or UNIMPLEMENTED for RPCs not there yet.
	missing       codes.Code
	missingReason string
}

var connectionRPCs = []nameRPC{
	{"GetConnection", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.GetConnection(ctx, &certsyncv1.GetConnectionRequest{Name: n})
		return err
	}, wantNotFound, reasonConnMissing},
	{"CompareFingerprints", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.CompareFingerprints(ctx, &certsyncv1.CompareFingerprintsRequest{Name: n})
		return err
	}, wantNotFound, reasonConnMissing},
	{"ProbeScimAuth", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ProbeScimAuth(ctx, &certsyncv1.ProbeScimAuthRequest{Name: n})
		return err
	}, wantNotFound, reasonConnMissing},
	{"ReregisterCertificate", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ReregisterCertificate(ctx, &certsyncv1.ReregisterCertificateRequest{Name: n, ValidateOnly: true})
		return err
	}, wantNotFound, reasonConnMissing},
	{"CheckGate", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.CheckGate(ctx, &certsyncv1.CheckGateRequest{Name: n})
		return err
	}, wantNotFound, reasonConnMissing},
	{"WatchGate", func(ctx context.Context, e *hostileEnv, n string) error {
		return callWatchGate(&certsyncv1.WatchGateRequest{Name: n})(ctx, e)
	}, wantNotFound, reasonConnMissing},
	// Not implemented yet (except GetEscalationBundle): well-formed names
	// are UNIMPLEMENTED, malformed ones are refused by validation first.
	{"ImportSourceCertificate", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ImportSourceCertificate(ctx, &certsyncv1.ImportSourceCertificateRequest{Name: n, Certificate: e.certPEM})
		return err
	}, wantNotFound, reasonConnMissing},
	{"ListSourceCertificates", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ListSourceCertificates(ctx, &certsyncv1.ListSourceCertificatesRequest{Name: n})
		return err
	}, wantNotFound, reasonConnMissing},
	{"RecordTargetMapping", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.RecordTargetMapping(ctx, &certsyncv1.RecordTargetMappingRequest{Name: n, Fingerprint: strings.Repeat("ab", 32)})
		return err
	}, wantNotFound, reasonConnMissing},
	{"StartProvisioningJob", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.StartProvisioningJob(ctx, &certsyncv1.StartProvisioningJobRequest{Name: n})
		return err
	}, wantNotFound, reasonConnMissing},
	{"GetProvisioningJob", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.GetProvisioningJob(ctx, &certsyncv1.GetProvisioningJobRequest{Name: n, JobId: "1"})
		return err
	}, wantNotFound, reasonConnMissing},
	{"GetEscalationBundle", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.GetEscalationBundle(ctx, &certsyncv1.GetEscalationBundleRequest{Name: n})
		return err
	}, wantNotFound, reasonConnMissing},
}

var operationRPCs = []nameRPC{
	{"GetOperation", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: n})
		return err
	}, wantNotFound, reasonOpMissing},
	{"WaitOperation", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.WaitOperation(ctx, &certsyncv1.WaitOperationRequest{Name: n, Timeout: durationpb.New(0)})
		return err
	}, wantNotFound, reasonOpMissing},
	{"CancelOperation", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.CancelOperation(ctx, &certsyncv1.CancelOperationRequest{Name: n})
		return err
	}, wantNotFound, reasonOpMissing},
	{"ApproveOperation", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ApproveOperation(ctx, &certsyncv1.ApproveOperationRequest{Name: n})
		return err
	}, wantNotFound, reasonOpMissing},
	{"ConfirmOperationStep", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ConfirmOperationStep(ctx, &certsyncv1.ConfirmOperationStepRequest{Name: n, Step: certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING})
		return err
	}, wantNotFound, reasonOpMissing},
}

// filterRPCs take an optional connection filter in field `connection`.
var filterRPCs = []nameRPC{
	{"ListOperations", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ListOperations(ctx, &certsyncv1.ListOperationsRequest{Connection: n})
		return err
	}, wantOK, ""},
	{"ListAuditEvents", func(ctx context.Context, e *hostileEnv, n string) error {
		_, err := e.c.ListAuditEvents(ctx, &certsyncv1.ListAuditEventsRequest{Connection: n})
		return err
	}, wantOK, ""},
}

// nameRows crosses RPCs with hostile names.
func nameRows(rpcs []nameRPC, names []hostileName, field string, emptyMeansAll bool) []hostileRow {
	var rows []hostileRow
	for _, r := range rpcs {
		for _, n := range names {
			row := hostileRow{rpc: r.rpc, name: field + " " + n.label, bug: n.bug}
			name := n.value
			row.call = func(ctx context.Context, e *hostileEnv) error { return r.call(ctx, e, name) }
			switch {
			case n.value == "" && emptyMeansAll:
				// An empty filter means every connection.
				row.code, row.reason = r.missing, ""
			case n.refusal != "":
				row.code, row.reason, row.fields, row.violation = wantInvalid, reasonBadRequest, field, n.refusal
			case emptyMeansAll:
				// A filter on a connection that does not exist matches
				// nothing; it is no error.
				row.code, row.reason = r.missing, ""
			default:
				row.code, row.reason = r.missing, r.missingReason
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func hostileDur(s int64, n int32) *durationpb.Duration {
	return &durationpb.Duration{Seconds: s, Nanos: n}
}

// pemRepeat is n copies of a certificate's PEM.
func hostilePEMRepeat(p []byte, n int) []byte { return []byte(strings.Repeat(string(p), n)) }

// hostileRows are the rows specific to each RPC's other fields.
func (e *hostileEnv) hostileRows() []hostileRow {
	const healthy = "connections/demo-healthy"
	long := func(n int) string { return strings.Repeat("r", n) }
	huge := strings.Repeat("h", hostileMiB)
	maxCerts := x509cert.DefaultLimits.MaxCertificates
	garbageDER := append([]byte{0x30, 0x82, 0xff, 0xff}, []byte(strings.Repeat("\x02\x01\x00", 300))...)
	nestedDER := []byte(strings.Repeat("\x30\x80", 50000))
	var causedBy strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&causedBy, "Caused by: %d 401 AUTH0032\n", i%10)
	}
	var httpLines strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&httpLines, "Caused by: HTTP %d https://h%d.cert.sapsf.com/x\n", 400+i%200, i)
	}
	return []hostileRow{
		// ListConnections: paging.
		{rpc: "ListConnections", name: "defaults", call: callListConnections(&certsyncv1.ListConnectionsRequest{}), code: wantOK},
		{rpc: "ListConnections", name: "page_size -1", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageSize: -1}), code: wantInvalid, reason: reasonBadRequest, fields: "page_size"},
		{rpc: "ListConnections", name: "page_size min int32", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageSize: math.MinInt32}), code: wantInvalid, reason: reasonBadRequest, fields: "page_size"},
		{rpc: "ListConnections", name: "page_size max int32", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageSize: math.MaxInt32}), code: wantOK},
		{rpc: "ListConnections", name: "garbage token", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageToken: "not-a-token"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListConnections", name: "token with NUL", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageToken: "\x00\x1b\n"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListConnections", name: "token 513 bytes", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageToken: long(513)}), code: wantInvalid, reason: reasonBadRequest, fields: "page_token"},
		{rpc: "ListConnections", name: "token 1MiB", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageToken: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "page_token"},
		{rpc: "ListConnections", name: "token unicode", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageToken: "\u202e\U0001F600"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		// A token is an opaque cursor: a forged one that decodes still
		// only moves the cursor.
		{rpc: "ListConnections", name: "forged token", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("after:../../etc/passwd\x00"))}), code: wantOK},
		{rpc: "ListConnections", name: "every field wrong", call: callListConnections(&certsyncv1.ListConnectionsRequest{PageSize: -5, PageToken: long(600)}), code: wantInvalid, reason: reasonBadRequest, fields: "page_size"},

		// InspectCertificate: bytes.
		{rpc: "InspectCertificate", name: "certificate", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: e.certPEM}), code: wantOK},
		{rpc: "InspectCertificate", name: "DER certificate", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: e.certDER}), code: wantOK},
		{rpc: "InspectCertificate", name: "DER with trailing garbage", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: append(append([]byte{}, e.certDER...), "\x00\x1b[2J"...)}), code: wantInvalid, reason: "*", fields: "data"},
		{rpc: "InspectCertificate", name: "DER key in PEM clothing", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.keyDER})}), code: wantInvalid, reason: "*", fields: "data"},
		{rpc: "InspectCertificate", name: "empty", call: callInspect(&certsyncv1.InspectCertificateRequest{}), code: wantInvalid, reason: reasonBadRequest, fields: "data"},
		{rpc: "InspectCertificate", name: "whitespace", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: []byte(" \r\n\t")}), code: wantInvalid, reason: "EMPTY_INPUT", fields: "data"},
		{rpc: "InspectCertificate", name: "private key", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: e.keyPEM}), code: wantInvalid, reason: "PRIVATE_KEY_REFUSED", fields: "data"},
		{rpc: "InspectCertificate", name: "certificate then key", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: append(append([]byte{}, e.certPEM...), e.keyPEM...)}), code: wantInvalid, reason: "PRIVATE_KEY_REFUSED", fields: "data"},
		{rpc: "InspectCertificate", name: "key after 200 certificates", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: append(hostilePEMRepeat(e.certPEM, 200), e.keyPEM...)}), code: wantInvalid, reason: "PRIVATE_KEY_REFUSED", fields: "data"},
		{rpc: "InspectCertificate", name: "private key DER", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: e.keyDER}), code: wantInvalid, reason: "*", fields: "data"},
		{rpc: "InspectCertificate", name: "garbage DER", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: garbageDER}), code: wantInvalid, reason: "*", fields: "data"},
		{rpc: "InspectCertificate", name: "nested indefinite DER", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: nestedDER}), code: wantInvalid, reason: "*", fields: "data"},
		{rpc: "InspectCertificate", name: "text with controls", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: []byte("\x00\x1b[31m\u202e hello")}), code: wantInvalid, reason: "*", fields: "data"},
		{rpc: "InspectCertificate", name: "hostile PEM label", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: []byte("-----BEGIN \x1b[2J" + long(5000) + "-----\nAAAA\n-----END \x1b[2J" + long(5000) + "-----\n")}), code: wantInvalid, reason: "*", fields: "data"},
		{rpc: "InspectCertificate", name: "UTF-16", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: []byte("\xff\xfe-\x00-\x00")}), code: wantInvalid, reason: "UNRECOGNIZED_INPUT", fields: "data"},
		{rpc: "InspectCertificate", name: "certificates at the limit", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: hostilePEMRepeat(e.certPEM, maxCerts)}), code: wantOK},
		{rpc: "InspectCertificate", name: "certificates over the limit", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: hostilePEMRepeat(e.certPEM, maxCerts+1)}), code: wantInvalid, reason: "TOO_MANY_CERTIFICATES", fields: "data"},
		{rpc: "InspectCertificate", name: "1000 certificates", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: hostilePEMRepeat(e.certPEM, 1000)}), code: wantInvalid, reason: "TOO_MANY_CERTIFICATES", fields: "data"},
		{rpc: "InspectCertificate", name: "1MiB+1", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: make([]byte, hostileMiB+1)}), code: wantInvalid, reason: "INPUT_TOO_LARGE", fields: "data"},
		{rpc: "InspectCertificate", name: "5MiB", call: callInspect(&certsyncv1.InspectCertificateRequest{Data: make([]byte, 5*hostileMiB)}), code: codes.ResourceExhausted},

		// DiagnoseJobError: text.
		{rpc: "DiagnoseJobError", name: "empty", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{}), code: wantInvalid, reason: reasonBadRequest, fields: "text"},
		{rpc: "DiagnoseJobError", name: "256KiB", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: strings.Repeat("x", 256<<10)}), code: wantOK},
		{rpc: "DiagnoseJobError", name: "256KiB+1", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: strings.Repeat("x", 256<<10+1)}), code: wantInvalid, reason: "TEXT_TOO_LONG", fields: "text"},
		{rpc: "DiagnoseJobError", name: "1MiB of NUL", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: strings.Repeat("\x00", hostileMiB)}), code: wantInvalid, reason: "TEXT_TOO_LONG", fields: "text"},
		{rpc: "DiagnoseJobError", name: "10000 Caused by lines", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: causedBy.String()}), code: wantOK},
		{rpc: "DiagnoseJobError", name: "3000 distinct HTTP failures", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: httpLines.String()}), code: wantOK},
		{rpc: "DiagnoseJobError", name: "controls and RTL", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: "Caused by: \x00\x1b[2J\u202e HTTP operation failed invoking https://\u202eexample.cert.sapsf.com with statusCode: 401"}), code: wantOK},
		{rpc: "DiagnoseJobError", name: "private key", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: string(e.keyPEM)}), code: wantOK},
		{rpc: "DiagnoseJobError", name: "5MiB", call: callDiagnose(&certsyncv1.DiagnoseJobErrorRequest{Text: strings.Repeat("x", 5*hostileMiB)}), code: codes.ResourceExhausted},

		// ReregisterCertificate: every free-text field; valid ones as dry runs.
		{rpc: "ReregisterCertificate", name: "dry run", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync", ValidateOnly: true}), code: wantOK},
		{rpc: "ReregisterCertificate", name: "request_id unicode", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, RequestId: "job-\U0001F600"}), code: wantInvalid, reason: reasonBadRequest, fields: "request_id"},
		{rpc: "ReregisterCertificate", name: "request_id NUL", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, RequestId: "job\x00"}), code: wantInvalid, reason: reasonBadRequest, fields: "request_id"},
		{rpc: "ReregisterCertificate", name: "request_id traversal", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, RequestId: "../../x"}), code: wantInvalid, reason: reasonBadRequest, fields: "request_id"},
		{rpc: "ReregisterCertificate", name: "request_id 129", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, RequestId: long(129)}), code: wantInvalid, reason: reasonBadRequest, fields: "request_id"},
		{rpc: "ReregisterCertificate", name: "request_id 1MiB", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, RequestId: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "request_id"},
		{rpc: "ReregisterCertificate", name: "reason 513", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Reason: long(513)}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "ReregisterCertificate", name: "reason 1MiB", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Reason: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "ReregisterCertificate", name: "reason newline", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Reason: "CHG-1\nfake audit line"}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "ReregisterCertificate", name: "reason escape", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Reason: "\x1b[2J"}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "ReregisterCertificate", name: "reason private key", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Reason: string(e.keyPEM)}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		// Format characters are not control characters: an RTL override
		// in a reason is accepted today (see the report).
		{rpc: "ReregisterCertificate", name: "reason RTL override", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync", ValidateOnly: true, Reason: "CHG-1 \u202e4321-GHC"}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "ReregisterCertificate", name: "etag 257", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Etag: long(257)}), code: wantInvalid, reason: reasonBadRequest, fields: "etag"},
		{rpc: "ReregisterCertificate", name: "etag NUL", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Etag: "\x00"}), code: wantInvalid, reason: reasonBadRequest, fields: "etag"},
		{rpc: "ReregisterCertificate", name: "etag garbage", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync", ValidateOnly: true, Etag: "\U0001F600\u00e9"}), code: codes.FailedPrecondition, reason: "*"},
		{rpc: "ReregisterCertificate", name: "etag RTL override", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync", ValidateOnly: true, Etag: "\u202e"}), code: wantInvalid, reason: reasonBadRequest, fields: "etag"},
		{rpc: "ReregisterCertificate", name: "mapping_id 257", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, MappingId: long(257)}), code: wantInvalid, reason: reasonBadRequest, fields: "mapping_id"},
		{rpc: "ReregisterCertificate", name: "mapping_id traversal", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: "connections/demo-desync", ValidateOnly: true, MappingId: "../../mappings/x"}), code: codes.FailedPrecondition, reason: "*"},
		{rpc: "ReregisterCertificate", name: "every field wrong", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: huge, ValidateOnly: true, RequestId: "a b", Reason: "\n", Etag: long(300), MappingId: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "name,request_id,reason,etag,mapping_id"},
		{rpc: "ReregisterCertificate", name: "5MiB reason", call: callReregister(&certsyncv1.ReregisterCertificateRequest{Name: healthy, ValidateOnly: true, Reason: strings.Repeat("r", 5*hostileMiB)}), code: codes.ResourceExhausted},

		// GetOperation of one that exists.
		{rpc: "GetOperation", name: "existing", call: func(ctx context.Context, e *hostileEnv) error {
			_, err := e.c.GetOperation(ctx, &certsyncv1.GetOperationRequest{Name: e.op})
			return err
		}, code: wantOK},

		// ListOperations: paging.
		{rpc: "ListOperations", name: "page_size -1", call: callListOperations(&certsyncv1.ListOperationsRequest{PageSize: -1}), code: wantInvalid, reason: reasonBadRequest, fields: "page_size"},
		{rpc: "ListOperations", name: "page_size max int32", call: callListOperations(&certsyncv1.ListOperationsRequest{PageSize: math.MaxInt32}), code: wantOK},
		{rpc: "ListOperations", name: "garbage token", call: callListOperations(&certsyncv1.ListOperationsRequest{PageToken: "garbage"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListOperations", name: "token controls", call: callListOperations(&certsyncv1.ListOperationsRequest{PageToken: "\x00\n\x1b\u202e"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListOperations", name: "token SQL", call: callListOperations(&certsyncv1.ListOperationsRequest{PageToken: "' OR 1=1 --"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListOperations", name: "token base64 garbage", call: callListOperations(&certsyncv1.ListOperationsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("after:' OR 1=1 --"))}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListOperations", name: "token 1MiB", call: callListOperations(&certsyncv1.ListOperationsRequest{PageToken: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "page_token"},
		{rpc: "ListOperations", name: "SQL in connection", call: callListOperations(&certsyncv1.ListOperationsRequest{Connection: "connections/x' OR '1'='1"}), code: wantInvalid, reason: reasonBadRequest, fields: "connection"},

		// WaitOperation: durations.
		{rpc: "WaitOperation", name: "existing, timeout 0", call: func(ctx context.Context, e *hostileEnv) error {
			return callWait(&certsyncv1.WaitOperationRequest{Name: e.op, Timeout: hostileDur(0, 0)})(ctx, e)
		}, code: wantOK},
		{rpc: "WaitOperation", name: "existing, no timeout", call: func(ctx context.Context, e *hostileEnv) error {
			return callWait(&certsyncv1.WaitOperationRequest{Name: e.op})(ctx, e)
		}, code: wantOK},
		{rpc: "WaitOperation", name: "timeout -1s", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(-1, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "timeout -1ns", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(0, -1)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "timeout 10m+1ns", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(600, 1)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "timeout 100 years", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(100*365*24*3600, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "timeout past max", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(math.MaxInt64, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "timeout min int64", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(math.MinInt64, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "nanos 2e9", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(1, 2e9)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "nanos max int32", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(0, math.MaxInt32)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "signs differ", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/x", Timeout: hostileDur(1, -1)}), code: wantInvalid, reason: reasonBadRequest, fields: "timeout"},
		{rpc: "WaitOperation", name: "name and timeout wrong", call: callWait(&certsyncv1.WaitOperationRequest{Name: "operations/../x", Timeout: hostileDur(-1, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "name,timeout"},

		// CancelOperation.
		{rpc: "CancelOperation", name: "done operation", call: func(ctx context.Context, e *hostileEnv) error {
			return callCancel(&certsyncv1.CancelOperationRequest{Name: e.op, Reason: "hostile"})(ctx, e)
		}, code: codes.FailedPrecondition, reason: "OPERATION_DONE"},
		{rpc: "CancelOperation", name: "reason 1MiB", call: callCancel(&certsyncv1.CancelOperationRequest{Name: "operations/x", Reason: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "CancelOperation", name: "reason controls", call: callCancel(&certsyncv1.CancelOperationRequest{Name: "operations/x", Reason: "ok\r\nfake"}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},

		// ApproveOperation and ConfirmOperationStep.
		{rpc: "ApproveOperation", name: "reason escape", call: callApprove(&certsyncv1.ApproveOperationRequest{Name: "operations/x", Reason: "\x1b]0;pwned\x07"}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "ApproveOperation", name: "done operation", call: func(ctx context.Context, e *hostileEnv) error {
			return callApprove(&certsyncv1.ApproveOperationRequest{Name: e.op})(ctx, e)
		}, code: codes.FailedPrecondition, reason: "NOT_PENDING_APPROVAL"},
		{rpc: "ConfirmOperationStep", name: "step 99", call: callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: "operations/x", Step: 99}), code: wantInvalid, reason: "STEP_NOT_CONFIRMABLE", fields: "step"},
		{rpc: "ConfirmOperationStep", name: "step -1", call: callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: "operations/x", Step: -1}), code: wantInvalid, reason: "STEP_NOT_CONFIRMABLE", fields: "step"},
		{rpc: "ConfirmOperationStep", name: "step unset", call: callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: "operations/x"}), code: wantInvalid, reason: "STEP_REQUIRED", fields: "step"},
		{rpc: "ConfirmOperationStep", name: "a step no person performs", call: callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: "operations/x", Step: certsyncv1.StepKind_STEP_KIND_PROBE}), code: wantInvalid, reason: "STEP_NOT_CONFIRMABLE", fields: "step"},
		{rpc: "ConfirmOperationStep", name: "not a manual operation", call: func(ctx context.Context, e *hostileEnv) error {
			return callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: e.op, Step: certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE})(ctx, e)
		}, code: codes.FailedPrecondition, reason: "*"},
		{rpc: "ConfirmOperationStep", name: "fingerprint 1MiB", call: callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: "operations/x", Step: certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE, Fingerprint: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "fingerprint"},
		{rpc: "ConfirmOperationStep", name: "note 1MiB", call: callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: "operations/x", Note: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "note"},
		{rpc: "ConfirmOperationStep", name: "note NUL", call: callConfirm(&certsyncv1.ConfirmOperationStepRequest{Name: "operations/x", Note: "\x00"}), code: wantInvalid, reason: reasonBadRequest, fields: "note"},

		// CheckGate: durations, job id, view.
		{rpc: "CheckGate", name: "healthy", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy}), code: wantOK},
		{rpc: "CheckGate", name: "view 99", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, View: 99}), code: wantOK},
		{rpc: "CheckGate", name: "view -1", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, View: -1}), code: wantOK},
		{rpc: "CheckGate", name: "max age -1s", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, MaxEvidenceAge: hostileDur(-1, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "max_evidence_age"},
		{rpc: "CheckGate", name: "max age 24h+1s", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, MaxEvidenceAge: hostileDur(24*3600+1, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "max_evidence_age"},
		{rpc: "CheckGate", name: "max age 100 years", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, MaxEvidenceAge: hostileDur(100*365*24*3600, 0)}), code: wantInvalid, reason: reasonBadRequest, fields: "max_evidence_age"},
		{rpc: "CheckGate", name: "max age nanos 2e9", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, MaxEvidenceAge: hostileDur(0, 2e9)}), code: wantInvalid, reason: reasonBadRequest, fields: "max_evidence_age"},
		{rpc: "CheckGate", name: "max age past max", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, MaxEvidenceAge: hostileDur(math.MaxInt64, 999999999)}), code: wantInvalid, reason: reasonBadRequest, fields: "max_evidence_age"},
		{rpc: "CheckGate", name: "job_id 129", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, JobId: long(129)}), code: wantInvalid, reason: reasonBadRequest, fields: "job_id"},
		{rpc: "CheckGate", name: "job_id 1MiB", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, JobId: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "job_id"},
		{rpc: "CheckGate", name: "job_id log injection", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, JobId: "1\ndecision=ALLOW"}), code: wantInvalid, reason: reasonBadRequest, fields: "job_id"},
		{rpc: "CheckGate", name: "job_id unicode", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: healthy, JobId: "\U0001F600 caf\u00e9 cafe\u0301"}), code: wantOK},
		{rpc: "CheckGate", name: "every field wrong", call: callCheckGate(&certsyncv1.CheckGateRequest{Name: "\x00", MaxEvidenceAge: hostileDur(-1, -1), JobId: "\x1b", View: 99}), code: wantInvalid, reason: reasonBadRequest, fields: "name,max_evidence_age,job_id"},

		// WatchGate: a server stream; errors come with the first message.
		{rpc: "WatchGate", name: "view 99", call: callWatchGate(&certsyncv1.WatchGateRequest{Name: healthy, View: 99}), code: wantOK},
		{rpc: "WatchGate", name: "view min int32", call: callWatchGate(&certsyncv1.WatchGateRequest{Name: healthy, View: math.MinInt32}), code: wantOK},

		// ImportSourceCertificate: not implemented yet; a key is still
		// never echoed.
		{rpc: "ImportSourceCertificate", name: "private key", call: callImport(&certsyncv1.ImportSourceCertificateRequest{Name: healthy, Certificate: e.keyPEM}), code: wantInvalid, reason: "PRIVATE_KEY_REFUSED", fields: "certificate"},
		{rpc: "ImportSourceCertificate", name: "garbage DER", call: callImport(&certsyncv1.ImportSourceCertificateRequest{Name: healthy, Certificate: garbageDER}), code: wantInvalid, reason: "MALFORMED_CERTIFICATE", fields: "certificate"},
		{rpc: "ImportSourceCertificate", name: "1000 certificates", call: callImport(&certsyncv1.ImportSourceCertificateRequest{Name: healthy, Certificate: hostilePEMRepeat(e.certPEM, 1000)}), code: wantInvalid, reason: "TOO_MANY_CERTIFICATES", fields: "certificate"},
		{rpc: "ImportSourceCertificate", name: "reason NUL", call: callImport(&certsyncv1.ImportSourceCertificateRequest{Name: healthy, Reason: "\x00"}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "ImportSourceCertificate", name: "5MiB", call: callImport(&certsyncv1.ImportSourceCertificateRequest{Name: healthy, Certificate: make([]byte, 5*hostileMiB)}), code: codes.ResourceExhausted},

		// ListSourceCertificates: paging, then UNIMPLEMENTED.
		{rpc: "ListSourceCertificates", name: "page_size -1", call: callListSource(&certsyncv1.ListSourceCertificatesRequest{Name: healthy, PageSize: -1}), code: wantInvalid, reason: reasonBadRequest, fields: "page_size"},
		{rpc: "ListSourceCertificates", name: "token 1MiB", call: callListSource(&certsyncv1.ListSourceCertificatesRequest{Name: healthy, PageToken: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "page_token"},
		{rpc: "ListSourceCertificates", name: "garbage token", call: callListSource(&certsyncv1.ListSourceCertificatesRequest{Name: healthy, PageToken: "garbage"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},

		// RecordTargetMapping: its input is judged before the connection's
		// registry driver (demo-healthy's is http, not manual).
		{rpc: "RecordTargetMapping", name: "note 1MiB", call: callRecord(&certsyncv1.RecordTargetMappingRequest{Name: healthy, Note: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "note"},
		{rpc: "RecordTargetMapping", name: "note escape", call: callRecord(&certsyncv1.RecordTargetMappingRequest{Name: healthy, Note: "\x1b[2J"}), code: wantInvalid, reason: reasonBadRequest, fields: "note"},
		{rpc: "RecordTargetMapping", name: "1MiB configuration_name", call: callRecord(&certsyncv1.RecordTargetMappingRequest{Name: healthy, ConfigurationName: huge, LoginName: "\x00", IntegrationName: "\u202e"}), code: wantInvalid, reason: reasonBadRequest, fields: "configuration_name,integration_name,login_name"},
		{rpc: "RecordTargetMapping", name: "garbage fingerprint", call: callRecord(&certsyncv1.RecordTargetMappingRequest{Name: healthy, Fingerprint: "zz:" + long(1000)}), code: wantInvalid, reason: reasonBadRequest, fields: "fingerprint"},
		{rpc: "RecordTargetMapping", name: "private key", call: callRecord(&certsyncv1.RecordTargetMappingRequest{Name: healthy, Certificate: e.keyPEM}), code: wantInvalid, reason: "PRIVATE_KEY_REFUSED", fields: "certificate"},
		{rpc: "RecordTargetMapping", name: "nothing recorded", call: callRecord(&certsyncv1.RecordTargetMappingRequest{Name: healthy}), code: wantInvalid, reason: "FINGERPRINT_REQUIRED", fields: "fingerprint"},
		{rpc: "RecordTargetMapping", name: "registry not manual", call: callRecord(&certsyncv1.RecordTargetMappingRequest{Name: healthy, Fingerprint: strings.Repeat("AB:", 31) + "AB"}), code: codes.FailedPrecondition, reason: "REGISTRY_NOT_MANUAL"},

		{rpc: "StartProvisioningJob", name: "type 99", call: callStartJob(&certsyncv1.StartProvisioningJobRequest{Name: healthy, Type: 99}), code: wantInvalid, reason: "UNKNOWN_JOB_TYPE", fields: "type"},
		{rpc: "StartProvisioningJob", name: "force without reason", call: callStartJob(&certsyncv1.StartProvisioningJobRequest{Name: healthy, Force: true}), code: wantInvalid, reason: "REASON_REQUIRED", fields: "reason"},
		{rpc: "StartProvisioningJob", name: "reason 1MiB", call: callStartJob(&certsyncv1.StartProvisioningJobRequest{Name: healthy, Reason: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "StartProvisioningJob", name: "reason newline", call: callStartJob(&certsyncv1.StartProvisioningJobRequest{Name: healthy, Force: true, Reason: "a\nb"}), code: wantInvalid, reason: reasonBadRequest, fields: "reason"},
		{rpc: "GetProvisioningJob", name: "job_id 1MiB", call: callGetJob(&certsyncv1.GetProvisioningJobRequest{Name: healthy, JobId: huge}), code: wantInvalid, reason: reasonBadRequest, fields: "job_id"},
		{rpc: "GetEscalationBundle", name: "healthy", call: func(ctx context.Context, e *hostileEnv) error {
			_, err := e.c.GetEscalationBundle(ctx, &certsyncv1.GetEscalationBundleRequest{Name: healthy})
			return err
		}, code: wantOK},
		{rpc: "GetProvisioningJob", name: "job_id traversal", call: callGetJob(&certsyncv1.GetProvisioningJobRequest{Name: healthy, JobId: "../../x\x00"}), code: wantInvalid, reason: reasonBadRequest, fields: "job_id"},

		// ListAuditEvents, VerifyAuditLog.
		{rpc: "ListAuditEvents", name: "page_size min int32", call: callListAudit(&certsyncv1.ListAuditEventsRequest{PageSize: math.MinInt32}), code: wantInvalid, reason: reasonBadRequest, fields: "page_size"},
		{rpc: "ListAuditEvents", name: "page_size max int32", call: callListAudit(&certsyncv1.ListAuditEventsRequest{PageSize: math.MaxInt32}), code: wantOK},
		{rpc: "ListAuditEvents", name: "token 513", call: callListAudit(&certsyncv1.ListAuditEventsRequest{PageToken: long(513)}), code: wantInvalid, reason: reasonBadRequest, fields: "page_token"},
		{rpc: "ListAuditEvents", name: "garbage token", call: callListAudit(&certsyncv1.ListAuditEventsRequest{PageToken: "garbage"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListAuditEvents", name: "token SQL", call: callListAudit(&certsyncv1.ListAuditEventsRequest{PageToken: "1; DROP TABLE audit_events; --"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "ListAuditEvents", name: "token negative sequence", call: callListAudit(&certsyncv1.ListAuditEventsRequest{PageToken: "-1"}), code: wantInvalid, reason: "INVALID_PAGE_TOKEN", fields: "page_token"},
		{rpc: "VerifyAuditLog", name: "empty", call: func(ctx context.Context, e *hostileEnv) error {
			_, err := e.c.VerifyAuditLog(ctx, &certsyncv1.VerifyAuditLogRequest{})
			return err
		}, code: wantOK},
	}
}

// rawCodec sends and receives bytes as they are, so that a test can put on
// the wire what no generated client would. It claims the name "proto" so
// that the server decodes with its usual codec.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, okType := v.(*[]byte)
	if !okType {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, okType := v.(*[]byte)
	if !okType {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

const hostileServicePrefix = "/certsync.v1.CertSyncService/"

// callRaw sends raw bytes as the request of a unary method.
func callRaw(method string, req []byte) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error {
		var resp []byte
		return e.h.conn.Invoke(ctx, hostileServicePrefix+method, &req, &resp, grpc.ForceCodec(rawCodec{}))
	}
}

// watchRaw sends raw bytes as WatchGate's request and returns the error of
// the first response.
func watchRaw(req []byte) func(context.Context, *hostileEnv) error {
	return func(ctx context.Context, e *hostileEnv) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		desc := &grpc.StreamDesc{StreamName: "WatchGate", ServerStreams: true}
		s, err := e.h.conn.NewStream(sctx, desc, hostileServicePrefix+"WatchGate", grpc.ForceCodec(rawCodec{}))
		if err != nil {
			return err
		}
		if err := s.SendMsg(&req); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		var resp []byte
		return s.RecvMsg(&resp)
	}
}

// wire helpers: field numbers and values as the protobuf wire format has them.
func wireString(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func wireVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func wireBytes(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func wireJoin(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// rawRows put malformed protobuf on the wire: gRPC refuses what does not
// decode (INTERNAL, with no ErrorInfo of ours), and what decodes reaches the
// usual validation.
func (e *hostileEnv) rawRows() []hostileRow {
	healthy := wireString(1, "connections/demo-healthy")
	var deepGroup []byte
	for range 100000 {
		deepGroup = protowire.AppendTag(deepGroup, 99, protowire.StartGroupType)
	}
	var manyNames []byte
	for i := range 100000 {
		manyNames = append(manyNames, wireString(1, fmt.Sprintf("connections/n%d", i))...)
	}
	manyNames = append(manyNames, healthy...)
	return []hostileRow{
		{rpc: "GetConnection", name: "raw well-formed", call: callRaw("GetConnection", healthy), code: wantOK},
		{rpc: "GetConnection", name: "raw empty", call: callRaw("GetConnection", nil), code: wantInvalid, reason: reasonBadRequest, fields: "name"},
		{rpc: "GetConnection", name: "raw unknown fields", call: callRaw("GetConnection", wireJoin(wireVarint(99, 7), healthy, wireBytes(12345, []byte("\x00\xff")), protowire.AppendTag(nil, 5, protowire.Fixed64Type), make([]byte, 8))), code: wantOK},
		// A known field with the wrong wire type is kept as an unknown
		// field: name is then empty.
		{rpc: "GetConnection", name: "raw wrong wire type", call: callRaw("GetConnection", wireVarint(1, 42)), code: wantInvalid, reason: reasonBadRequest, fields: "name"},
		{rpc: "GetConnection", name: "raw invalid UTF-8", call: callRaw("GetConnection", wireBytes(1, []byte("connections/\xff\xfe"))), code: codes.Internal},
		{rpc: "GetConnection", name: "raw truncated", call: callRaw("GetConnection", []byte{0x0a, 0x05, 'a'}), code: codes.Internal},
		{rpc: "GetConnection", name: "raw field number 0", call: callRaw("GetConnection", []byte{0x00, 0x01}), code: codes.Internal},
		{rpc: "GetConnection", name: "raw huge length", call: callRaw("GetConnection", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}), code: codes.Internal},
		{rpc: "GetConnection", name: "raw overlong varint", call: callRaw("GetConnection", append([]byte{0x08}, []byte(strings.Repeat("\xff", 11))...)), code: codes.Internal},
		{rpc: "GetConnection", name: "raw unterminated group", call: callRaw("GetConnection", protowire.AppendTag(nil, 99, protowire.StartGroupType)), code: codes.Internal},
		{rpc: "GetConnection", name: "raw 100000 nested groups", call: callRaw("GetConnection", deepGroup), code: codes.Internal},
		{rpc: "GetConnection", name: "raw name 100001 times", call: callRaw("GetConnection", manyNames), code: wantOK},
		// For a bytes field the last occurrence wins: a key hidden in an
		// earlier occurrence is never looked at.
		{rpc: "InspectCertificate", name: "raw key then certificate", call: callRaw("InspectCertificate", wireJoin(wireBytes(1, e.keyPEM), wireBytes(1, e.certPEM))), code: wantOK},
		{rpc: "InspectCertificate", name: "raw certificate then key", call: callRaw("InspectCertificate", wireJoin(wireBytes(1, e.certPEM), wireBytes(1, e.keyPEM))), code: wantInvalid, reason: "PRIVATE_KEY_REFUSED", fields: "data"},
		{rpc: "CheckGate", name: "raw duration wrong wire type", call: callRaw("CheckGate", wireJoin(healthy, wireVarint(2, 5))), code: wantOK},
		{rpc: "CheckGate", name: "raw duration garbage", call: callRaw("CheckGate", wireJoin(healthy, wireBytes(2, []byte{0x08, 0xff}))), code: codes.Internal},
		{rpc: "CheckGate", name: "raw duration seconds as string", call: callRaw("CheckGate", wireJoin(healthy, wireBytes(2, wireString(1, "60")))), code: wantOK},
		{rpc: "CheckGate", name: "raw duration nanos out of range", call: callRaw("CheckGate", wireJoin(healthy, wireBytes(2, wireVarint(2, uint64(1<<32-1))))), code: wantInvalid, reason: reasonBadRequest, fields: "max_evidence_age"},
		{rpc: "CheckGate", name: "raw view 2^32-1", call: callRaw("CheckGate", wireJoin(healthy, wireVarint(4, 1<<32-1))), code: wantOK},
		{rpc: "WaitOperation", name: "raw timeout with nested unknown fields", call: callRaw("WaitOperation", wireJoin(wireString(1, "operations/x"), wireBytes(2, wireBytes(99, wireBytes(99, wireBytes(99, nil)))))), code: wantNotFound, reason: reasonOpMissing},
		{rpc: "VerifyAuditLog", name: "raw unknown fields", call: callRaw("VerifyAuditLog", wireJoin(wireVarint(1, 1), wireString(2, "x"))), code: wantOK},
		{rpc: "VerifyAuditLog", name: "raw garbage", call: callRaw("VerifyAuditLog", []byte{0xff, 0xff, 0xff}), code: codes.Internal},
		{rpc: "WatchGate", name: "raw well-formed", call: watchRaw(healthy), code: wantOK},
		{rpc: "WatchGate", name: "raw invalid UTF-8", call: watchRaw(wireBytes(1, []byte{0xc3, 0x28})), code: codes.Internal},
		{rpc: "WatchGate", name: "raw truncated", call: watchRaw([]byte{0x0a, 0x7f}), code: codes.Internal},
		{rpc: "WatchGate", name: "raw empty", call: watchRaw(nil), code: wantInvalid, reason: reasonBadRequest, fields: "name"},
		{rpc: "Nope", name: "raw unknown method", call: callRaw("Nope", healthy), code: wantUnimpl},
	}
}

// checkAnswer compares one answer with its row and returns what differs.
func (e *hostileEnv) checkAnswer(row hostileRow, err error) []string {
	var problems []string
	st := status.Convert(err)
	if st.Code() != row.code {
		problems = append(problems, fmt.Sprintf("code %v, want %v (%.200q)", st.Code(), row.code, st.Message()))
	}
	if err == nil {
		return problems
	}
	var reason string
	var fields, violations []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() != service.ErrorDomain {
				problems = append(problems, fmt.Sprintf("ErrorInfo domain %q", d.GetDomain()))
			}
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
				violations = append(violations, v.GetReason())
			}
		}
	}
	if row.violation != "" && (len(violations) == 0 || violations[0] != row.violation) {
		problems = append(problems, fmt.Sprintf("field violation reasons %v, want %s first", violations, row.violation))
	}
	if row.reason != "*" && reason != row.reason {
		problems = append(problems, fmt.Sprintf("reason %q, want %q", reason, row.reason))
	}
	if row.reason == "*" && reason == "" {
		problems = append(problems, "no ErrorInfo")
	}
	if got := strings.Join(fields, ","); got != row.fields {
		problems = append(problems, fmt.Sprintf("BadRequest fields %q, want %q", got, row.fields))
	}
	if n := len(st.Message()); n > maxHostileMessage {
		problems = append(problems, fmt.Sprintf("message is %d bytes (at most %d): %.120q...", n, maxHostileMessage, st.Message()))
	}
	if n := proto.Size(st.Proto()); n > maxHostileStatus {
		problems = append(problems, fmt.Sprintf("status with details is %d bytes (at most %d)", n, maxHostileStatus))
	}
	wire, _ := proto.Marshal(st.Proto())
	for _, frag := range e.keyFragments() {
		if strings.Contains(string(wire), frag) {
			problems = append(problems, "the answer repeats the private key")
			break
		}
	}
	if strings.Contains(string(wire), "BEGIN PRIVATE KEY") {
		problems = append(problems, "the answer repeats a private key header")
	}
	return problems
}

func TestHostileInputs(t *testing.T) {
	start := time.Now()
	e := newHostileEnv(t)

	var rows []hostileRow
	rows = append(rows, nameRows(connectionRPCs, hostileConnectionNames, "name", false)...)
	rows = append(rows, nameRows(operationRPCs, hostileOperationNames, "name", false)...)
	rows = append(rows, nameRows(filterRPCs, hostileConnectionNames, "connection", true)...)
	rows = append(rows, e.hostileRows()...)
	rows = append(rows, e.rawRows()...)

	// Every RPC of the service has rows.
	covered := map[string]bool{}
	for _, r := range rows {
		covered[r.rpc] = true
	}
	for _, m := range certsyncv1.CertSyncService_ServiceDesc.Methods {
		if !covered[m.MethodName] {
			t.Errorf("no hostile rows for %s", m.MethodName)
		}
	}
	for _, s := range certsyncv1.CertSyncService_ServiceDesc.Streams {
		if !covered[s.StreamName] {
			t.Errorf("no hostile rows for %s", s.StreamName)
		}
	}

	for _, row := range rows {
		t.Run(row.rpc+"/"+row.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			callStart := time.Now()
			err := row.call(cctx, e)
			el := time.Since(callStart)
			problems := e.checkAnswer(row, err)
			if testing.Verbose() {
				t.Logf("%v %s (%s)", status.Code(err), hostileStatusReason(err), el.Round(time.Millisecond))
			}
			switch {
			case row.bug != "" && len(problems) == 0:
				t.Errorf("marked as a known bug (%s) but passes: remove the marker", row.bug)
			case row.bug != "":
				t.Logf("known bug (%s): %s", row.bug, strings.Join(problems, "; "))
			case len(problems) > 0:
				t.Error(strings.Join(problems, "; "))
			}
		})
	}

	// The server still serves, and nothing it was sent broke it.
	hr, err := e.h.health.Check(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after the hostile table: %v %v", hr.GetStatus(), err)
	}
	if _, err := e.c.GetConnection(ctx(t), &certsyncv1.GetConnectionRequest{Name: "connections/demo-healthy"}); err != nil {
		t.Fatalf("GetConnection after the hostile table: %v", err)
	}
	e.checkAuditLog(t)
	e.checkServerLog(t)
	t.Logf("%d rows in %s", len(rows), time.Since(start).Round(time.Millisecond))
}

// checkAuditLog reads the audit log the hostile calls left: it must be
// intact, hold no control characters (operators read it on terminals, SIEMs
// parse it), nothing unbounded, and no key material.
func (e *hostileEnv) checkAuditLog(t *testing.T) {
	t.Helper()
	v, err := e.c.VerifyAuditLog(ctx(t), &certsyncv1.VerifyAuditLogRequest{})
	must(t, err)
	if !v.GetIntact() || v.GetEventsChecked() == 0 {
		t.Errorf("audit log after the hostile table: intact %v, %d events: %s", v.GetIntact(), v.GetEventsChecked(), v.GetMessage())
	}
	var control, keys []string
	token := ""
	for pages := 0; pages < 100; pages++ {
		r, err := e.c.ListAuditEvents(ctx(t), &certsyncv1.ListAuditEventsRequest{PageSize: 500, PageToken: token})
		must(t, err)
		for _, ev := range r.GetEvents() {
			for field, s := range map[string]string{"identity": ev.GetIdentity(), "role": ev.GetRole(), "rpc": ev.GetRpc(),
				"connection": ev.GetConnection(), "request_id": ev.GetRequestId(), "reason": ev.GetReason(),
				"outcome": ev.GetOutcome(), "operation": ev.GetOperation()} {
				where := fmt.Sprintf("event %d (%s, %s) %s", ev.GetSequence(), ev.GetRpc(), ev.GetOutcome(), field)
				if strings.IndexFunc(s, unicode.IsControl) >= 0 {
					control = append(control, fmt.Sprintf("%s has a control character: %.60q", where, s))
				}
				if len(s) > 2048 {
					t.Errorf("%s is %d bytes", where, len(s))
				}
				for _, frag := range e.keyFragments() {
					if strings.Contains(s, frag) {
						keys = append(keys, where+" holds the private key")
						break
					}
				}
			}
		}
		if token = r.GetNextPageToken(); token == "" {
			break
		}
	}
	for _, problems := range [][]string{control, keys} {
		if len(problems) > 0 {
			t.Errorf("audit log: %d problems, e.g. %s", len(problems), strings.Join(problems[:min(3, len(problems))], "; "))
		}
	}
}

// checkServerLog reads what the server logged while the hostile table ran:
// bounded lines, no raw control characters (the handler quotes them), no
// key material.
func (e *hostileEnv) checkServerLog(t *testing.T) {
	t.Helper()
	logs := e.logs.String()
	if logs == "" {
		t.Fatal("the server logged nothing")
	}
	var keys []string
	for i, line := range strings.Split(logs, "\n") {
		if len(line) > 16<<10 {
			t.Errorf("log line %d is %d bytes: %.200s", i+1, len(line), line)
		}
		if strings.ContainsAny(line, "\x00\x1b\r") {
			t.Errorf("log line %d holds a raw control character: %.200q", i+1, line)
		}
		for _, frag := range e.keyFragments() {
			if strings.Contains(line, frag) {
				keys = append(keys, fmt.Sprintf("log line %d: %.120s", i+1, line))
				break
			}
		}
	}
	if len(keys) > 0 {
		t.Errorf("the server log holds key material: %s", strings.Join(keys, "; "))
	}
}

func hostileStatusReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if ei, isInfo := d.(*errdetails.ErrorInfo); isInfo {
			return ei.GetReason()
		}
	}
	return ""
}

// TestHostileMessageLimit checks the gRPC limit from configuration: a
// request above DefaultMaxMessageBytes never reaches a handler.
func TestHostileMessageLimit(t *testing.T) {
	h := newHarness(t, "demo")
	_, err := h.client.GetConnection(ctx(t), &certsyncv1.GetConnectionRequest{Name: strings.Repeat("n", config.DefaultMaxMessageBytes+1)})
	if code := status.Code(err); code != codes.ResourceExhausted {
		t.Fatalf("name over the message limit: %v", err)
	}
	if msg := status.Convert(err).Message(); len(msg) > maxHostileMessage {
		t.Errorf("message is %d bytes", len(msg))
	}
	if _, err := h.health.Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("after: %v", err)
	}
}
