package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
)

// Authentication methods, as they appear in Identity.Method, logs and audit
// events.
const (
	MethodToken       = "token"
	MethodCertificate = "certificate"
	MethodNone        = "none"
)

// connectionPrefix is the resource prefix of connection names; patterns and
// ids are accepted with or without it.
const connectionPrefix = "connections/"

// Identity is who called and what they may do.
type Identity struct {
	// Name is the token's name, the certificate's URI SAN or CN, or
	// "anonymous". It is not secret: it goes into logs and audit events.
	Name string
	Role Role
	// Method is how the caller authenticated: MethodToken,
	// MethodCertificate or MethodNone (authentication not required).
	Method string
	// Connections limits the identity to connection ids matching one of
	// these path.Match patterns (without "connections/"); empty means all.
	Connections []string
}

// Anonymous is every caller when authentication is not required (loopback
// development use): nothing is checked, so nothing is withheld.
func Anonymous() Identity {
	return Identity{Name: "anonymous", Role: RoleApprover, Method: MethodNone}
}

// Scoped reports whether the identity is limited to some connections.
func (id Identity) Scoped() bool { return len(id.Connections) > 0 }

// MayAccess reports whether the identity may see or act on the connection
// connID ("prod-1" or "connections/prod-1"). The interceptors check this for
// every request that names its connection; handlers of requests that name
// something else (operations) must check it themselves once they know the
// connection, and list handlers must filter with it.
func (id Identity) MayAccess(connID string) bool {
	if id.Role == RoleNone {
		return false
	}
	if len(id.Connections) == 0 {
		return true
	}
	connID = strings.TrimPrefix(connID, connectionPrefix)
	if connID == "" {
		return false
	}
	for _, p := range id.Connections {
		// Patterns were validated at load, so an error cannot happen here;
		// if it did, not matching is the safe answer.
		if ok, err := path.Match(p, connID); err == nil && ok {
			return true
		}
	}
	return false
}

// String is for messages: "gate-caller (token)".
func (id Identity) String() string { return fmt.Sprintf("%s (%s)", id.Name, id.Method) }

// LogValue keeps log lines uniform wherever an identity is logged.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", id.Name),
		slog.String("method", id.Method),
		slog.String("role", id.Role.String()),
	)
}

type identityKey struct{}

// NewContext returns ctx carrying id; the interceptors do this for every
// call they let through.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity the interceptors established for this
// call. ok is false when none did (e.g. open health checks, reflection).
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// normalizePatterns accepts "prod-*" and "connections/prod-*" alike and
// rejects patterns path.Match cannot use, so that a typo fails at load
// instead of silently matching nothing.
func normalizePatterns(patterns []string) ([]string, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(patterns))
	var errs []error
	for _, p := range patterns {
		q := strings.TrimPrefix(strings.TrimSpace(p), connectionPrefix)
		switch {
		case q == "":
			errs = append(errs, fmt.Errorf("connection pattern %q is empty", p))
			continue
		case strings.Contains(q, "/"):
			// Connection ids have no '/'; a pattern with one can never match.
			errs = append(errs, fmt.Errorf("connection pattern %q has a '/' after the optional connections/ prefix", p))
			continue
		}
		if _, err := path.Match(q, ""); err != nil {
			errs = append(errs, fmt.Errorf("connection pattern %q: %v", p, err))
			continue
		}
		out = append(out, q)
	}
	return out, errors.Join(errs...)
}
