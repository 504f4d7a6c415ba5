// Package auth decides who is calling certsync and whether they may make the
// call: identities from verified client certificates or bearer tokens, roles
// (viewer < operator < approver) with optional connection patterns, the one
// policy table that says which role each RPC needs, and the rate limit on
// explicit SCIM probes (each one is a login at SF).
//
// The interceptors belong after logging (so refusals are logged with their
// code) and before validation (so nothing about a request is revealed to a
// caller who may not make it). They return *fault.Error through the server's
// error mapper, never statuses of their own.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/certsync/certsync/service/fault"
)

// DefaultProbesPerMinute is the explicit-probe budget per caller and
// connection (DESIGN.md: "at most 20 per minute per caller and connection").
const DefaultProbesPerMinute = 20

// Binding gives the identity of a client certificate a role. ID is matched
// exactly against the certificate's first URI SAN (e.g.
// "spiffe://example.org/ops") when the certificate has one, else against its
// subject CN. IDs with a ':' are URIs and match only URI SANs; IDs without
// match only CNs, so that a CA that lets someone choose a CN cannot mint
// "spiffe://..." look-alikes.
type Binding struct {
	ID          string   `yaml:"id" json:"id"`
	Role        Role     `yaml:"role" json:"role"`
	Connections []string `yaml:"connections,omitempty" json:"connections,omitempty"`
}

// ValidateBindings reports every problem in bindings (empty or duplicate id,
// missing role, bad pattern), one error per problem, for start-up and
// `config check`.
func ValidateBindings(bindings []Binding) error {
	_, err := compileBindings(bindings)
	return err
}

func compileBindings(bindings []Binding) (map[string]Binding, error) {
	out := make(map[string]Binding, len(bindings))
	var errs []error
	for i, b := range bindings {
		where := fmt.Sprintf("bindings[%d] (%s)", i, b.ID)
		switch {
		case strings.TrimSpace(b.ID) == "":
			errs = append(errs, fmt.Errorf("bindings[%d]: id is missing; use the certificate's URI SAN or its subject CN", i))
			continue
		case b.ID != strings.TrimSpace(b.ID):
			errs = append(errs, fmt.Errorf("%s: id has leading or trailing spaces and would never match", where))
			continue
		}
		if _, dup := out[b.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: id is bound twice", where))
			continue
		}
		if b.Role <= RoleNone || b.Role > RoleApprover {
			errs = append(errs, fmt.Errorf("%s: role is missing or unknown; use viewer, operator or approver", where))
			continue
		}
		patterns, err := normalizePatterns(b.Connections)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		b.Connections = patterns
		out[b.ID] = b
	}
	return out, errors.Join(errs...)
}

// Options configure an Authorizer.
type Options struct {
	// Required turns authentication on; the server sets it when TLS or
	// tokens are configured. Without it every caller is Anonymous().
	Required bool
	// Tokens are the accepted bearer tokens; nil accepts none.
	Tokens *Tokens
	// Bindings give certificate identities their roles.
	Bindings []Binding
	// OpenHealth lets anyone check the overall health (service ""), and
	// OpenReflection lets anyone use server reflection. Both default to
	// true in DefaultOptions(); a zero Options has them false, since a
	// bool's zero value cannot mean "default true".
	OpenHealth, OpenReflection bool
	// ProbesPerMinute bounds explicit ProbeScimAuth calls per identity and
	// connection; 0 means DefaultProbesPerMinute, negative means no limit.
	ProbesPerMinute int
	// Now is the clock (rate limit, certificate expiry); nil means time.Now.
	Now func() time.Time
	// Logger receives refusals (never credentials); nil discards.
	Logger *slog.Logger
	// OnAuthenticated, if set, is called once per call with the identity
	// the call runs as, e.g. to add it to the logging interceptor's fields
	// (which runs outside this one and cannot see the handler's context).
	OnAuthenticated func(ctx context.Context, id Identity)
}

// DefaultOptions are the documented defaults: health and reflection open.
func DefaultOptions() Options {
	return Options{OpenHealth: true, OpenReflection: true}
}

// Authorizer authenticates calls and applies the policy table.
type Authorizer struct {
	o        Options
	bindings map[string]Binding
	limiter  *probeLimiter
	log      *slog.Logger
	now      func() time.Time
	howTo    string
}

// New builds an Authorizer. It fails when a binding is invalid; tokens were
// validated by LoadTokens.
func New(o Options) (*Authorizer, error) {
	bindings, err := compileBindings(o.Bindings)
	if err != nil {
		return nil, err
	}
	a := &Authorizer{o: o, bindings: bindings, log: o.Logger, now: o.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	switch n := o.ProbesPerMinute; {
	case n == 0:
		a.limiter = newProbeLimiter(DefaultProbesPerMinute)
	case n > 0:
		a.limiter = newProbeLimiter(n)
	}
	a.howTo = howToAuthenticate(o)
	return a, nil
}

func howToAuthenticate(o Options) string {
	switch {
	case o.Tokens != nil && len(o.Bindings) > 0:
		return "send a bearer token (metadata \"authorization: Bearer <token>\") or connect with a client certificate that the server trusts"
	case o.Tokens != nil:
		return "send a bearer token (metadata \"authorization: Bearer <token>\")"
	case len(o.Bindings) > 0:
		return "connect with a client certificate that the server trusts"
	}
	return "send a bearer token (metadata \"authorization: Bearer <token>\") or connect with a client certificate"
}

// Authenticate establishes the caller's identity from the call's context:
// a bearer token in the "authorization" metadata, else a client certificate
// whose chain the TLS handshake verified. A token that is sent must be
// valid; there is no falling back to the certificate, so a caller never
// runs as someone other than the one it meant. A verified certificate that
// no binding names authenticates with RoleNone. When authentication is not
// required, everyone is Anonymous().
func (a *Authorizer) Authenticate(ctx context.Context) (Identity, error) {
	if !a.o.Required {
		return Anonymous(), nil
	}
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		return a.fromToken(vals)
	}
	if leaf := verifiedLeaf(ctx); leaf != nil {
		return a.fromCertificate(leaf.subjectURI, leaf.cn, leaf.notAfter)
	}
	return Identity{}, a.unauthenticated("no credentials", "the call carried no credentials")
}

func (a *Authorizer) fromToken(vals []string) (Identity, error) {
	if len(vals) != 1 {
		return Identity{}, a.unauthenticated("several authorization values", "the call carried more than one authorization value")
	}
	scheme, token, found := strings.Cut(strings.TrimSpace(vals[0]), " ")
	token = strings.TrimSpace(token)
	if !found || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return Identity{}, a.unauthenticated("malformed authorization", "the authorization metadata is not \"Bearer <token>\"")
	}
	if a.o.Tokens == nil {
		return Identity{}, a.unauthenticated("token not accepted", "this server accepts no bearer tokens")
	}
	rec, ok := a.o.Tokens.lookup(token)
	if !ok {
		return Identity{}, a.unauthenticated("unknown token", "the bearer token is not known (revoked, mistyped, or for another server)")
	}
	return Identity{Name: rec.name, Role: rec.role, Method: MethodToken, Connections: rec.connections}, nil
}

func (a *Authorizer) fromCertificate(uri, cn string, notAfter time.Time) (Identity, error) {
	// The handshake checked validity, but a connection may outlive its
	// certificate; refuse calls on it once the certificate has expired.
	if a.now().After(notAfter) {
		return Identity{}, a.unauthenticated("client certificate expired", "the client certificate has expired; reconnect with a valid one")
	}
	name := uri
	if name == "" {
		name = cn
		// See Binding: CNs that look like URIs never match a binding.
		if strings.Contains(name, ":") {
			return Identity{Name: name, Role: RoleNone, Method: MethodCertificate}, nil
		}
	}
	if name == "" {
		return Identity{}, a.unauthenticated("client certificate without identity", "the client certificate has neither a URI SAN nor a subject CN")
	}
	b, ok := a.bindings[name]
	if !ok {
		return Identity{Name: name, Role: RoleNone, Method: MethodCertificate}, nil
	}
	if uri == "" && strings.Contains(b.ID, ":") {
		return Identity{Name: name, Role: RoleNone, Method: MethodCertificate}, nil
	}
	return Identity{Name: name, Role: b.Role, Method: MethodCertificate, Connections: b.Connections}, nil
}

type leafInfo struct {
	subjectURI string
	cn         string
	notAfter   time.Time
}

// verifiedLeaf returns the client certificate only if the TLS stack verified
// its chain: a certificate that was merely presented proves nothing.
func verifiedLeaf(ctx context.Context) *leafInfo {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	var state *credentials.TLSInfo
	switch ai := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		state = &ai
	case *credentials.TLSInfo:
		state = ai
	default:
		return nil
	}
	chains := state.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return nil
	}
	leaf := chains[0][0]
	info := &leafInfo{cn: leaf.Subject.CommonName, notAfter: leaf.NotAfter}
	if len(leaf.URIs) > 0 {
		info.subjectURI = leaf.URIs[0].String()
	}
	return info
}

// unauthenticated builds the refusal. problem is for the server log;
// detail tells the caller what was wrong and how to authenticate.
func (a *Authorizer) unauthenticated(problem, detail string) *fault.Error {
	e := fault.New(fault.Unauthenticated, "UNAUTHENTICATED", "authentication required: %s; %s", detail, a.howTo)
	e.Cause = errors.New(problem)
	return e
}

// authorize applies the method's policy to a caller and, when the request
// is known, to the connection it names. req is nil for a stream before its
// first message; the message checks then happen in RecvMsg.
func (a *Authorizer) authorize(ctx context.Context, fullMethod string, id Identity, req any) error {
	p := policyFor(fullMethod)
	if !id.Role.Includes(p.role) {
		return a.roleRequired(ctx, fullMethod, id, p.role)
	}
	switch p.scope {
	case scopeGlobal:
		if id.Scoped() {
			return a.connectionDenied(ctx, fullMethod, id, "", "covers every connection")
		}
	case scopeHealth:
		if req == nil {
			return nil
		}
		if svc, _ := stringField(req, "service"); strings.HasPrefix(svc, connectionPrefix) && !id.MayAccess(svc) {
			return a.connectionDenied(ctx, fullMethod, id, svc, "")
		}
	case scopeName, scopeFilter:
		if req == nil {
			return nil
		}
		field := "name"
		if p.scope == scopeFilter {
			field = "connection"
		}
		conn, ok := stringField(req, field)
		if !ok {
			// The table names a field the message lacks: a programming
			// error, so refuse rather than skip the check.
			return a.connectionDenied(ctx, fullMethod, id, "", "does not say which connection it is for (a server policy error)")
		}
		if !id.MayAccess(conn) {
			why := ""
			if conn == "" {
				why = "without " + field + " would cover every connection; set " + field + " to one of them"
			}
			return a.connectionDenied(ctx, fullMethod, id, conn, why)
		}
		if p.probe {
			if err := a.limitProbe(ctx, fullMethod, id, conn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Authorizer) roleRequired(ctx context.Context, fullMethod string, id Identity, required Role) error {
	rpc := rpcName(fullMethod)
	var msg string
	if id.Role == RoleNone {
		msg = fmt.Sprintf("%s requires the %s role; %s is authenticated but has no role (bind it in the configuration)", rpc, required, id)
	} else {
		msg = fmt.Sprintf("%s requires the %s role; %s has the %s role", rpc, required, id, id.Role)
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "permission denied", slog.Any("identity", id), slog.String("rpc", fullMethod), slog.String("required_role", required.String()))
	return &fault.Error{
		Kind:    fault.PermissionDenied,
		Reason:  "ROLE_REQUIRED",
		Message: msg,
		Metadata: map[string]string{
			"required_role": required.String(),
			"role":          id.Role.String(),
			"identity":      id.Name,
			"rpc":           rpc,
		},
	}
}

// connectionDenied refuses a scoped identity. why is empty when conn is a
// connection outside the identity's patterns, else it says why the call
// cannot be scoped.
func (a *Authorizer) connectionDenied(ctx context.Context, fullMethod string, id Identity, conn, why string) error {
	rpc := rpcName(fullMethod)
	allowed := strings.Join(id.Connections, ", ")
	conn = shorten(conn)
	var msg string
	if why == "" {
		msg = fmt.Sprintf("%s may not access %q: it may access only connections matching %s", id, conn, allowed)
	} else {
		msg = fmt.Sprintf("%s may access only connections matching %s, and %s %s", id, allowed, rpc, why)
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "permission denied", slog.Any("identity", id), slog.String("rpc", fullMethod), slog.String("connection", conn))
	return &fault.Error{
		Kind:    fault.PermissionDenied,
		Reason:  "CONNECTION_NOT_ALLOWED",
		Message: msg,
		Metadata: map[string]string{
			"connection":          conn,
			"allowed_connections": strings.Join(id.Connections, ","),
			"identity":            id.Name,
			"rpc":                 rpc,
		},
	}
}

// shorten bounds caller input that goes into messages and logs, since it
// has not been validated yet.
func shorten(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

func (a *Authorizer) limitProbe(ctx context.Context, fullMethod string, id Identity, conn string) error {
	if a.limiter == nil {
		return nil
	}
	conn = strings.TrimPrefix(conn, connectionPrefix)
	key := conn
	if len(key) > 64 {
		// Connection ids are at most 63 characters; longer names are
		// invalid anyway and must not make the limiter hold large keys.
		sum := sha256.Sum256([]byte(key))
		key = "invalid:" + hex.EncodeToString(sum[:8])
	}
	ok, wait := a.limiter.take(id.Method+"\x00"+id.Name, key, a.now())
	if ok {
		return nil
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "probe rate limited", slog.Any("identity", id), slog.String("connection", conn), slog.Duration("retry_after", wait))
	return &fault.Error{
		Kind:   fault.ResourceExhausted,
		Reason: "RATE_LIMITED",
		Message: fmt.Sprintf("%s: at most %d probes per minute per caller and connection (each one is a login at SF); try again in %s",
			rpcName(fullMethod), a.limiter.perMinute, wait.Round(time.Millisecond)),
		Metadata: map[string]string{
			"identity":         id.Name,
			"connection":       connectionPrefix + shorten(conn),
			"limit_per_minute": fmt.Sprint(a.limiter.perMinute),
			"rpc":              rpcName(fullMethod),
		},
		RetryAfter: wait,
	}
}
