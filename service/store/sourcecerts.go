package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
)

const sourceCertColumns = `id, connection, der, sha256, active, import_time, imported_by, reason`

func scanSourceCertificate(r row) (*SourceCertificate, error) {
	var c SourceCertificate
	var t int64
	if err := r.Scan(&c.ID, &c.Connection, &c.DER, &c.SHA256, &c.Active, &t, &c.ImportedBy, &c.Reason); err != nil {
		return nil, err
	}
	c.ImportTime = fromColumnTime(t)
	return &c, nil
}

// sourceCertLockSpace is the first key of the advisory locks that
// serialize imports per connection on PostgreSQL ("cert" in ASCII).
const sourceCertLockSpace int32 = 0x63657274

// sourceCertLockKey is the second: a hash of the connection. Two
// connections sharing a hash only wait for each other.
func sourceCertLockKey(connection string) int32 {
	h := fnv.New32a()
	h.Write([]byte(connection))
	return int32(h.Sum32())
}

// ImportSourceCertificate stores c (or updates the version with the same
// DER), see Store.ImportSourceCertificate.
func (s *sqlStore) ImportSourceCertificate(ctx context.Context, c *SourceCertificate, audit *AuditEvent) (*SourceCertificate, error) {
	if c == nil || c.Connection == "" || len(c.DER) == 0 {
		return nil, errors.New("store: a source certificate needs a Connection and DER")
	}
	in := *c
	in.DER = bytes.Clone(c.DER)
	sum := sha256.Sum256(in.DER)
	in.SHA256 = hex.EncodeToString(sum[:])
	if in.ID == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b) // never fails on supported platforms
		in.ID = hex.EncodeToString(b)
	}
	if in.ImportTime.IsZero() {
		in.ImportTime = s.now()
	}
	in.ImportTime = in.ImportTime.UTC()
	t, err := columnTime("import time", in.ImportTime)
	if err != nil {
		return nil, err
	}
	var out *SourceCertificate
	var stored AuditEvent
	err = s.b.inTx(ctx, func(q querier) error {
		out = nil
		// On PostgreSQL (READ COMMITTED) two imports for one connection
		// could otherwise both miss the row the other inserts, and fail
		// on the unique indexes or deadlock.
		if s.d.lockSourceCerts != "" {
			if _, err := q.exec(ctx, s.d.lockSourceCerts, sourceCertLockSpace, sourceCertLockKey(in.Connection)); err != nil {
				return err
			}
		}
		existing, err := scanSourceCertificate(q.queryRow(ctx, `SELECT `+sourceCertColumns+
			` FROM source_certificates WHERE connection = $1 AND sha256 = $2`, in.Connection, in.SHA256))
		switch {
		case errors.Is(err, errNoRows):
			existing = nil
		case err != nil:
			return err
		}
		if existing == nil {
			var taken int
			err := q.queryRow(ctx, `SELECT 1 FROM source_certificates WHERE id = $1`, in.ID).Scan(&taken)
			if err == nil {
				return fmt.Errorf("%w: source certificate id %q is taken", ErrConflict, in.ID)
			}
			if !errors.Is(err, errNoRows) {
				return err
			}
		}
		if in.Active {
			// IPS has one Active certificate: the new one replaces
			// whichever was active before.
			if _, err := q.exec(ctx, `UPDATE source_certificates SET active = $1
				WHERE connection = $2 AND active = $3 AND sha256 <> $4`,
				false, in.Connection, true, in.SHA256); err != nil {
				return err
			}
		}
		if existing != nil {
			if _, err := q.exec(ctx, `UPDATE source_certificates SET active = $1 WHERE id = $2`,
				in.Active, existing.ID); err != nil {
				return err
			}
			existing.Active = in.Active
			out = existing
		} else {
			if _, err := q.exec(ctx, `INSERT INTO source_certificates (`+sourceCertColumns+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				in.ID, in.Connection, in.DER, in.SHA256, in.Active, t, in.ImportedBy, in.Reason); err != nil {
				if s.b.isUniqueViolation(err) {
					return fmt.Errorf("%w: source certificate id %q is taken", ErrConflict, in.ID)
				}
				return err
			}
			cp := in
			cp.DER = bytes.Clone(in.DER)
			out = &cp
		}
		if audit != nil {
			stored, err = s.appendAudit(ctx, q, audit)
			return err
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("store: import source certificate for %s: %w", in.Connection, err)
	}
	if audit != nil {
		*audit = stored
	}
	return out, nil
}

// ListSourceCertificates returns versions newest first (ImportTime, then
// ID, both descending) and the token of the next page, "" on the last.
func (s *sqlStore) ListSourceCertificates(ctx context.Context, connection string, size int, token string) ([]*SourceCertificate, string, error) {
	size = pageSize(size)
	var where []string
	var args []any
	if connection != "" {
		args = append(args, connection)
		where = append(where, fmt.Sprintf("connection = $%d", len(args)))
	}
	if token != "" {
		p, err := decodePageToken(token, connection)
		if err != nil {
			return nil, "", err
		}
		if p.ID == "" {
			return nil, "", ErrInvalidPageToken
		}
		// Keyset paging, as ListOperations does.
		args = append(args, p.Time, p.ID)
		where = append(where, fmt.Sprintf("(import_time < $%d OR (import_time = $%d AND id < $%d))",
			len(args)-1, len(args)-1, len(args)))
	}
	sql := `SELECT ` + sourceCertColumns + ` FROM source_certificates`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, size+1)
	sql += fmt.Sprintf(` ORDER BY import_time DESC, id DESC LIMIT $%d`, len(args))
	out, err := queryAll(ctx, s.b, "list source certificates", scanSourceCertificate, sql, args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > size {
		out = out[:size]
		last := out[size-1]
		next = encodePageToken(pageToken{Time: last.ImportTime.UnixNano(), ID: last.ID, Connection: connection})
	}
	return out, next, nil
}

// ActiveSourceCertificate returns the connection's Active version or
// ErrNotFound.
func (s *sqlStore) ActiveSourceCertificate(ctx context.Context, connection string) (*SourceCertificate, error) {
	// The unique index allows one active row per connection; the order
	// only makes the answer well defined regardless.
	c, err := scanSourceCertificate(s.b.queryRow(ctx, `SELECT `+sourceCertColumns+` FROM source_certificates
		WHERE connection = $1 AND active = $2 ORDER BY import_time DESC, id DESC LIMIT 1`, connection, true))
	switch {
	case errors.Is(err, errNoRows):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("store: active source certificate of %s: %w", connection, err)
	}
	return c, nil
}
