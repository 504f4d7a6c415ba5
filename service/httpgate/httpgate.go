// Package httpgate serves a few of CertSyncService's methods as HTTP/JSON
// for schedulers that do not speak gRPC: the pre-job gate, the fingerprint
// comparison and the diagnosis of a job error.
//
// The handlers are grpc-gateway's, generated from the rules in
// proto/certsync/v1/certsync_http.yaml. They do not call the service
// directly: they call the daemon's own gRPC port through a client
// connection, so that every interceptor (authentication, roles, connection
// scopes, rate limits, audit, metrics, logging) applies exactly as to a gRPC
// caller. The HTTP Authorization header is forwarded as the "authorization"
// metadata; no other request header is forwarded.
//
// Routes:
//
//	GET  /v1/connections/{id}:checkGate  200 ALLOW, 409 DENY, 503 + Retry-After INCONCLUSIVE
//	GET  /v1/connections/{id}:compare
//	POST /v1/diagnose                    body {"text": "..."}
//
// Errors use grpc-gateway's mapping of gRPC codes to HTTP statuses (401
// unauthenticated, 403 permission denied, 404 not found, 400 invalid
// argument, 429 resource exhausted, 503 unavailable, ...) with a JSON body
// {"code", "message", "details"}.
package httpgate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

// DefaultRetryAfter is the Retry-After of an INCONCLUSIVE verdict that
// carries no retry_after of its own.
const DefaultRetryAfter = 5 * time.Second

// New returns the HTTP handler, calling client (a connection to the
// daemon's own gRPC port, see Dial).
func New(ctx context.Context, client certsyncv1.CertSyncServiceClient) (http.Handler, error) {
	mux := runtime.NewServeMux(
		// Only Authorization (which the gateway always forwards as
		// "authorization") reaches the gRPC side: no other header, and
		// no copy of the token under a second name.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			// protojson's usual mapping (lowerCamelCase names, enums by
			// name); unknown fields in a request body are refused.
			MarshalOptions:   protojson.MarshalOptions{},
			UnmarshalOptions: protojson.UnmarshalOptions{},
		}),
		runtime.WithForwardResponseOption(gateStatus),
		runtime.WithErrorHandler(explainGatewayErrors),
	)
	if err := certsyncv1.RegisterCertSyncServiceHandlerClient(ctx, mux, client); err != nil {
		return nil, err
	}
	return mux, nil
}

// gateStatus turns the gate's verdict into the HTTP status a scheduler can
// act on without reading the body: 200 ALLOW (the default), 409 DENY, 503
// with Retry-After INCONCLUSIVE. grpc-gateway calls it after the headers
// are set and before the body is written.
func gateStatus(_ context.Context, w http.ResponseWriter, m proto.Message) error {
	r, ok := m.(*certsyncv1.CheckGateResponse)
	if !ok {
		return nil
	}
	switch r.GetDecision() {
	case certsyncv1.GateDecision_GATE_DECISION_ALLOW:
		return nil
	case certsyncv1.GateDecision_GATE_DECISION_DENY:
		if ra := r.GetRetryAfter(); ra != nil && ra.AsDuration() > 0 {
			// A fix is running: worth asking again then.
			w.Header().Set("Retry-After", retryAfterSeconds(ra.AsDuration()))
		}
		w.WriteHeader(http.StatusConflict)
	default: // INCONCLUSIVE, or a decision this version does not know
		d := DefaultRetryAfter
		if ra := r.GetRetryAfter(); ra != nil && ra.AsDuration() > 0 {
			d = ra.AsDuration()
		}
		w.Header().Set("Retry-After", retryAfterSeconds(d))
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	return nil
}

// gatewayField finds the field in grpc-gateway's own parse errors
// ("parsing field \"max_evidence_age\": ...").
var gatewayField = regexp.MustCompile(`parsing field "([A-Za-z0-9_.]+)"`)

// explainGatewayErrors gives the refusals grpc-gateway makes itself (a query
// parameter or body it cannot read, before the gRPC service sees the call)
// the same details as the service's own: an ErrorInfo and, when the field
// is known, a BadRequest. The service's errors carry details already and
// pass unchanged.
func explainGatewayErrors(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	if st.Code() == codes.InvalidArgument && len(st.Details()) == 0 {
		msg := "the request could not be read: " + st.Message()
		details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: "INVALID_REQUEST", Domain: "certsync"}}
		if f := gatewayField.FindStringSubmatch(st.Message()); f != nil {
			details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: f[1], Description: msg, Reason: "INVALID_VALUE"}}})
		}
		if withDetails, derr := status.New(codes.InvalidArgument, msg).WithDetails(details...); derr == nil {
			err = withDetails.Err()
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// retryAfterSeconds is RFC 9110's delay-seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// Dial connects to the daemon's own gRPC listener at addr (an unspecified
// host such as 0.0.0.0 or [::] becomes loopback). With serverCert nil the
// connection is plain text, as the gRPC port is. Otherwise it is TLS and
// accepts exactly the certificate that serverCert returns, the one the
// gRPC port serves (re-read on change): the connection never leaves the
// host, and the certificate's names need not cover the loopback address.
// The gateway presents no client certificate: HTTP callers authenticate
// with bearer tokens.
func Dial(addr string, serverCert func() *x509.Certificate) (*grpc.ClientConn, error) {
	target, err := loopbackTarget(addr)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if serverCert != nil {
		creds = credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS12,
			// Chain and name checks are replaced by the exact match
			// below (VerifyConnection runs even so).
			InsecureSkipVerify: true, //nolint:gosec // pinned to the server's own certificate
			VerifyConnection: func(cs tls.ConnectionState) error {
				want := serverCert()
				if len(cs.PeerCertificates) == 0 || want == nil || !cs.PeerCertificates[0].Equal(want) {
					return errors.New("httpgate: the gRPC port did not present the daemon's own certificate")
				}
				return nil
			},
		})
	}
	return grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(creds))
}

func loopbackTarget(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port), nil
}
