package service

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/fault"
)

const (
	connectionPrefix = "connections/"
	operationPrefix  = "operations/"
)

// operationIDPattern matches the ids the service gives operations.
var operationIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// requestIDPattern bounds idempotency keys to characters that are safe in
// logs and audit lines.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// connectionID accepts "connections/{id}" or a bare id and returns the id.
func connectionID(field, name string) (string, *fault.FieldViolation) {
	id := strings.TrimPrefix(name, connectionPrefix)
	switch {
	case name == "":
		return "", &fault.FieldViolation{Field: field, Reason: "REQUIRED", Description: field + " is required, e.g. connections/demo-healthy"}
	case !config.ValidID(id):
		return "", &fault.FieldViolation{Field: field, Reason: "INVALID_NAME", Description: fmt.Sprintf("%s %s is not a connection name: expected connections/{id} with an id of 1-63 lower-case letters, digits or '-'", field, quoteLimited(name))}
	}
	return id, nil
}

// operationID accepts "operations/{id}" or a bare id and returns the id.
func operationID(field, name string) (string, *fault.FieldViolation) {
	id := strings.TrimPrefix(name, operationPrefix)
	switch {
	case name == "":
		return "", &fault.FieldViolation{Field: field, Reason: "REQUIRED", Description: field + " is required, e.g. operations/0b5f..."}
	case !operationIDPattern.MatchString(id):
		return "", &fault.FieldViolation{Field: field, Reason: "INVALID_NAME", Description: fmt.Sprintf("%s %s is not an operation name: expected operations/{id}", field, quoteLimited(name))}
	}
	return id, nil
}

// quoteLimited quotes caller input for an error message, shortened so that a
// huge or hostile value cannot bloat responses or logs.
func quoteLimited(s string) string {
	// The bound is on the quoted bytes: escaping can make one character ten
	// bytes long.
	const max = 80
	q := fmt.Sprintf("%q", s)
	if len(q) <= max {
		return q
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(q[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d characters)", q[:cut], utf8.RuneCountInString(s))
}

// checkText validates free text (reasons, notes, job ids): bounded length and
// no control characters, which would break log lines and audit records.
func checkText(field, v string, max int) *fault.FieldViolation {
	if n := len([]rune(v)); n > max {
		return &fault.FieldViolation{Field: field, Reason: "TOO_LONG", Description: fmt.Sprintf("%s is %d characters; at most %d are accepted", field, n, max)}
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) || bidiControl(r) }); i >= 0 {
		return &fault.FieldViolation{Field: field, Reason: "CONTROL_CHARACTER", Description: fmt.Sprintf("%s contains a control character at byte %d", field, i)}
	}
	return nil
}

// bidiControl reports the characters that reorder how text is displayed:
// in an audit record they could make a reason read differently from what
// it says.
func bidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F || r == 0x061C
}
