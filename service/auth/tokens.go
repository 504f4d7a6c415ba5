package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxTokensFileBytes bounds what a reload reads, so that a wrong path (a log
// file, a device) cannot exhaust memory.
const maxTokensFileBytes = 1 << 20

// tokenNamePattern keeps names safe in log lines, audit records and error
// metadata.
var tokenNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}$`)

// HashToken returns the lower-case hex SHA-256 of token: the value that goes
// into the tokens file, so that the file never holds a usable secret.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// tokenFile is the tokens file's shape.
type tokenFile struct {
	// A pointer tells "tokens: []" (deliberately none) from a missing key,
	// which is what a truncated or half-written file looks like.
	Tokens *[]tokenEntry `yaml:"tokens"`
}

type tokenEntry struct {
	Name        string   `yaml:"name"`
	Role        string   `yaml:"role"`
	SHA256      string   `yaml:"sha256"`
	Connections []string `yaml:"connections"`
}

// tokenRecord is one loaded token; the digest is compared, never the token.
type tokenRecord struct {
	name        string
	role        Role
	digest      [sha256.Size]byte
	connections []string
}

type tokenSet struct {
	records []tokenRecord
}

// Tokens is the set of bearer tokens from a YAML file, re-read on change.
// A reload that fails keeps the last good set, so that a half-written or
// mistyped file never locks every caller out. Replace the file atomically
// (write a sibling, rename it over, as Kubernetes secret updates do): an
// in-place write can be read half-done, and a half that parses is applied.
type Tokens struct {
	path    string
	current atomic.Pointer[tokenSet]

	mu   sync.Mutex // serialises reloads so that an older read never wins
	seen fileStamp  // the file as last read, good or not
}

// fileStamp identifies a version of a file without reading it. Size and
// modification time catch in-place edits; the FileInfo (through
// os.SameFile, i.e. device and inode) catches an atomic rename or a
// Kubernetes secret's symlink swap that keeps both.
type fileStamp struct {
	info os.FileInfo
}

func (s fileStamp) same(info os.FileInfo) bool {
	return s.info != nil && info != nil &&
		os.SameFile(s.info, info) &&
		s.info.Size() == info.Size() &&
		s.info.ModTime().Equal(info.ModTime())
}

// LoadTokens reads the tokens file. Any problem (unreadable file, unknown
// field, bad hash, unknown role, duplicate name or hash, bad pattern) is an
// error naming the entry, so that start-up fails with one line per problem.
// Errors never contain a hash or token.
func LoadTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Path returns the file the tokens come from.
func (t *Tokens) Path() string { return t.path }

// Names returns the loaded tokens' names and roles, for `config check`.
func (t *Tokens) Names() map[string]Role {
	set := t.current.Load()
	out := make(map[string]Role, len(set.records))
	for _, r := range set.records {
		out[r.name] = r.role
	}
	return out
}

// Reload re-reads the file now. On error the previous set stays in force
// and the error is returned.
func (t *Tokens) Reload() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reloadLocked()
}

func (t *Tokens) reloadLocked() error {
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	// Remember this version even if it turns out bad: the watcher then
	// reports it once instead of on every tick, and retries on the next
	// change.
	t.seen = fileStamp{info: info}
	data, err := io.ReadAll(io.LimitReader(f, maxTokensFileBytes+1))
	if err != nil {
		return fmt.Errorf("tokens file %s: %w", t.path, err)
	}
	if len(data) > maxTokensFileBytes {
		return fmt.Errorf("tokens file %s: larger than %d bytes", t.path, maxTokensFileBytes)
	}
	set, err := parseTokens(data)
	if err != nil {
		return fmt.Errorf("tokens file %s: %w", t.path, err)
	}
	t.current.Store(set)
	return nil
}

func parseTokens(data []byte) (*tokenSet, error) {
	var file tokenFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// A misspelt key ("connection:", "hash:") must not silently widen or
	// drop a restriction.
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("not a valid tokens file: %s", yamlErrorGist(err))
	}
	if file.Tokens == nil {
		return nil, errors.New("no tokens: list found (write \"tokens: []\" to accept none)")
	}
	var errs []error
	set := &tokenSet{}
	names := map[string]int{}
	digests := map[[sha256.Size]byte]int{}
	for i, e := range *file.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if e.Name != "" {
			where = fmt.Sprintf("tokens[%d] (%s)", i, e.Name)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		ok := true
		switch {
		case e.Name == "":
			bad("name is missing")
			ok = false
		case !tokenNamePattern.MatchString(e.Name):
			// Not echoed: a value that is not a name might be a pasted
			// secret.
			errs = append(errs, fmt.Errorf("tokens[%d]: name must be 1-128 letters, digits or . _ @ : / - starting with a letter or digit", i))
			ok = false
		default:
			if j, dup := names[e.Name]; dup {
				bad("name is also used by tokens[%d]; names identify callers in logs and audit events and must be unique", j)
				ok = false
			}
			names[e.Name] = i
		}
		role, err := ParseRole(e.Role)
		if err != nil {
			bad("%v", err)
			ok = false
		}
		// The value is never echoed: someone may have pasted the token
		// itself instead of its hash.
		var digest [sha256.Size]byte
		if len(e.SHA256) != hex.EncodedLen(sha256.Size) || !decodeHex(digest[:], e.SHA256) {
			bad("sha256 must be the 64 hex digits of the token's SHA-256 (e.g. from `printf %%s \"$TOKEN\" | sha256sum`); found %d characters", len(e.SHA256))
			ok = false
		} else if j, dup := digests[digest]; dup {
			bad("sha256 is the same as tokens[%d]'s; one token would have two names", j)
			ok = false
		} else {
			digests[digest] = i
		}
		patterns, err := normalizePatterns(e.Connections)
		if err != nil {
			bad("%v", err)
			ok = false
		}
		if ok {
			set.records = append(set.records, tokenRecord{name: e.Name, role: role, digest: digest, connections: patterns})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return set, nil
}

// decodeHex decodes exactly len(dst) bytes of hex, in either case.
func decodeHex(dst []byte, s string) bool {
	n, err := hex.Decode(dst, []byte(s))
	return err == nil && n == len(dst)
}

// yamlQuoted matches the values yaml quotes in type errors ("cannot
// unmarshal !!str `abc...`"): they are dropped because the value may be a
// token pasted in the wrong place.
var yamlQuoted = regexp.MustCompile("`[^`]*`")

// yamlErrorGist lists a yaml error's problems on one line, without quoted
// values; line numbers are enough to find the spot.
func yamlErrorGist(err error) string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		msgs[i] = strings.Join(strings.Fields(yamlQuoted.ReplaceAllString(m, "(value)")), " ")
	}
	return strings.Join(msgs, "; ")
}

// lookup finds the token's record. Every record is compared, whatever
// matches, and with subtle.ConstantTimeCompare, so that the time taken says
// nothing about which entry (or how much of a digest) matched.
func (t *Tokens) lookup(token string) (tokenRecord, bool) {
	set := t.current.Load()
	digest := sha256.Sum256([]byte(token))
	found := -1
	for i := range set.records {
		eq := subtle.ConstantTimeCompare(digest[:], set.records[i].digest[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return tokenRecord{}, false
	}
	return set.records[found], true
}

// changed reports whether the file differs from the version last read.
func (t *Tokens) changed() bool {
	info, err := os.Stat(t.path)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		// A missing file is a change worth reporting once; reloadLocked
		// will return the error. Forget the old stamp so that the file's
		// return is noticed.
		if t.seen.info == nil {
			return false
		}
		t.seen = fileStamp{}
		return true
	}
	return !t.seen.same(info)
}

// Run checks the file every interval and reloads it when it changed (size,
// modification time, or a different file under the name). onReload, if not
// nil, is called after every reload attempt with its error (nil on
// success); it is the place to log and count. Run returns when ctx is done.
func (t *Tokens) Run(ctx context.Context, interval time.Duration, onReload func(error)) {
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !t.changed() {
			continue
		}
		err := t.Reload()
		if onReload != nil {
			onReload(err)
		}
	}
}
