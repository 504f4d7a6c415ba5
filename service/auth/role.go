package auth

import (
	"fmt"
	"strings"
)

// Role is what a caller may do. Roles are ordered: each includes everything
// the roles below it may do, so a check is a single comparison.
type Role int

const (
	// RoleNone is an authenticated caller without a role (a client
	// certificate that no binding names). It may use only what is open.
	RoleNone Role = iota
	// RoleViewer reads: connections, verdicts, comparisons, probes, the gate,
	// operations, diagnoses.
	RoleViewer
	// RoleOperator also changes things: re-registration, imports, recorded
	// mappings, provisioning jobs, cancellation, confirmed steps; and reads
	// the audit log.
	RoleOperator
	// RoleApprover also approves operations that wait for approval.
	RoleApprover
)

var roleNames = [...]string{RoleNone: "none", RoleViewer: "viewer", RoleOperator: "operator", RoleApprover: "approver"}

// String returns the role's configuration name ("viewer", ...).
func (r Role) String() string {
	if r >= 0 && int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Includes reports whether a caller with role r may do what needs role
// required. RoleNone includes nothing, not even RoleNone, so that a missing
// policy entry can never open a method by accident.
func (r Role) Includes(required Role) bool {
	return r > RoleNone && r >= required && int(r) < len(roleNames)
}

// ParseRole reads a role name as written in configuration files. "none" is
// refused: a binding or token without a role is a configuration mistake.
func ParseRole(s string) (Role, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "viewer":
		return RoleViewer, nil
	case "operator":
		return RoleOperator, nil
	case "approver":
		return RoleApprover, nil
	case "":
		return RoleNone, fmt.Errorf("role is missing; use viewer, operator or approver")
	}
	return RoleNone, fmt.Errorf("role %q is unknown; use viewer, operator or approver", s)
}

// MarshalText lets YAML and JSON encoders write the role by name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText lets YAML and JSON decoders read a role by name, with
// ParseRole's rules, so that configuration structs can hold a Role directly.
func (r *Role) UnmarshalText(b []byte) error {
	v, err := ParseRole(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
