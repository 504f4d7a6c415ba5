package diagnose

import (
	"encoding/json"
	"html"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Response is what SF answered to one HTTP call.
type Response struct {
	// Status is the HTTP status; 0 when the caller does not know it (a job
	// log line that names a body but no status).
	Status int
	Body   string
}

// Classification of one SF answer.
type Classification struct {
	Cause Cause
	// ErrorCode is SF's code, e.g. "AUTH0032" from "[AUTH0032]...", or the
	// JSON error code when the body has no bracketed one.
	ErrorCode string
	// ErrorMessage is the most useful human message the body carries.
	ErrorMessage string
	// RetryAfter is what the body says about when to try again, 0 if nothing.
	RetryAfter time.Duration
}

// maxMessageBytes bounds ErrorMessage: it is shown to people and stored with
// evidence, and an HTML page or a stack trace in a body is not a message.
const maxMessageBytes = 1024

// The phrases of DOMAIN.md's failure table, lower-case, matched against the
// body with whitespace collapsed and HTML entities decoded, because SF's pages
// break lines and escape apostrophes where they like.
const (
	phraseInvalidClientCert   = "invalid client certificate"
	phraseSSLCertificateError = "ssl certificate error"
	phraseCredentialsRequired = "authentication credentials are required"
	phraseNoPermission        = "don't have permission"
	phraseTooManyRequests     = "too many requests"
)

// Classify names the cause of one SF answer from its status and body.
// The status decides first, as DOMAIN.md's table does; the body then tells
// the 401s and 400s apart. Bodies are parsed defensively: JSON of any of SF's
// shapes, JSON that is truncated or escaped inside a log, HTML, or text.
// With Status 0 (a log that quotes a body but no status), a SCIM body's own
// status is used, else the table's phrases alone.
func Classify(r Response) Classification {
	if r.Status >= 200 && r.Status <= 299 {
		// A success body may hold employee data: take nothing from it.
		return Classification{}
	}
	body := r.Body
	if !utf8.ValidString(body) {
		body = strings.ToValidUTF8(body, "\uFFFD")
	}
	b := parseBody(body)
	status := r.Status
	if status == 0 {
		status = b.status
	}
	c := Classification{
		ErrorCode:    b.errorCode(),
		ErrorMessage: b.message(),
		RetryAfter:   parseRetryAfter(b.flat),
	}
	c.Cause = causeOf(status, b)
	return c
}

func causeOf(status int, b parsedBody) Cause {
	text := b.flat
	switch {
	case status == 401 && (strings.Contains(text, "auth0032") || strings.Contains(text, phraseInvalidClientCert)):
		return CauseInvalidClientCertificate
	case status == 401 && strings.Contains(text, phraseCredentialsRequired):
		return CauseCredentialsRequired
	case status == 400 && strings.Contains(text, phraseSSLCertificateError):
		return CauseTLSRejected
	// nginx's own codes for a refused client certificate; SF's front end maps
	// them to 400, but a proxy in between may not.
	case status == 495 || status == 496:
		return CauseTLSRejected
	case status == 403:
		return CausePermissionDenied
	case status == 429:
		return CauseRateLimited
	case status >= 500 && status <= 599:
		return CauseServerError
	case status == 0:
		return causeFromTextOnly(text)
	}
	return CauseUnrecognizedResponse
}

// causeFromTextOnly serves bodies whose status the caller never saw (log
// lines that quote only the body): the table's phrases are specific enough to
// stand on their own.
func causeFromTextOnly(text string) Cause {
	switch {
	case strings.Contains(text, "auth0032") || strings.Contains(text, phraseInvalidClientCert):
		return CauseInvalidClientCertificate
	case strings.Contains(text, phraseCredentialsRequired):
		return CauseCredentialsRequired
	case strings.Contains(text, phraseSSLCertificateError):
		return CauseTLSRejected
	case strings.Contains(text, phraseNoPermission) || strings.Contains(text, "permission to view"):
		return CausePermissionDenied
	case strings.Contains(text, phraseTooManyRequests):
		return CauseRateLimited
	}
	return CauseUnrecognizedResponse
}

type bodyKind int

const (
	bodyEmpty bodyKind = iota
	bodyJSON
	bodyHTML
	bodyText
)

type parsedBody struct {
	kind bodyKind
	// flat is the whole body, entities decoded, whitespace collapsed,
	// lower-case: what phrases are matched against.
	flat string
	// From JSON: the fields SF's error shapes use.
	code, msg, details string
	status             int
	// From HTML: the visible text segments, in order, without duplicates.
	segments []string
	// text is the body with whitespace collapsed (plain-text bodies).
	text string
	// raw is the body with whitespace collapsed, case kept, for codes the
	// field extraction did not reach.
	raw string
	// broken: the body looked like JSON but did not parse.
	broken bool
}

func parseBody(body string) parsedBody {
	trimmed := strings.TrimSpace(body)
	p := parsedBody{}
	if trimmed == "" {
		return p
	}
	p.raw = collapseSpace(html.UnescapeString(unescapeLogJSON(trimmed)))
	p.flat = strings.ToLower(p.raw)
	switch {
	case looksLikeJSON(trimmed):
		p.kind = bodyJSON
		p.parseJSON(trimmed, 0)
	case trimmed[0] == '<':
		p.kind = bodyHTML
		p.segments = htmlSegments(trimmed)
	default:
		p.kind = bodyText
		p.text = collapseSpace(trimmed)
	}
	return p
}

// looksLikeJSON tells a JSON body from text that starts with a bracketed SF
// code, such as "[AUTH0032]Invalid client certificate".
func looksLikeJSON(s string) bool {
	if s[0] == '{' {
		return true
	}
	if s[0] != '[' {
		return false
	}
	rest := strings.TrimLeft(s[1:], " \t\r\n")
	return rest == "" || strings.ContainsRune(`{["]-0123456789`, rune(rest[0]))
}

// maxNesting bounds how deep JSON (and JSON quoted inside JSON strings) is
// followed, so a hostile body cannot make the walk expensive.
const maxNesting = 3

func (p *parsedBody) parseJSON(s string, depth int) {
	if depth >= maxNesting {
		return
	}
	v, ok := decodeJSON(s)
	if !ok {
		// Job logs quote bodies as they were, JSON-escaped or cut short;
		// take the fields a pattern can still see.
		p.scanFields(unescapeLogJSON(s))
		if depth == 0 {
			p.broken = true
		}
		return
	}
	var f fields
	f.walk(v, 0)
	// SF and gateways sometimes wrap one error in another's message; the
	// inner one is the more specific, so it wins.
	for _, inner := range []*string{&f.msg, &f.details} {
		t := strings.TrimSpace(*inner)
		if t == "" || (t[0] != '{' && t[0] != '[') {
			continue
		}
		var q parsedBody
		q.parseJSON(t, depth+1)
		if q.code == "" && q.msg == "" && q.details == "" {
			continue
		}
		*inner = ""
		if q.code != "" {
			f.code = q.code
		}
		if f.msg == "" {
			f.msg = q.msg
		}
		if f.details == "" {
			f.details = q.details
		}
		if f.status == 0 {
			f.status = q.status
		}
	}
	p.merge(f)
}

func decodeJSON(s string) (any, bool) {
	for _, cand := range []string{s, unescapeLogJSON(s)} {
		d := json.NewDecoder(strings.NewReader(cand))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err == nil {
			return v, true
		}
	}
	return nil, false
}

// merge keeps what p already has: outer fields come first in the walk, except
// where an inner error was found to be the real message.
func (p *parsedBody) merge(f fields) {
	if p.code == "" {
		p.code = f.code
	}
	if p.msg == "" {
		p.msg = f.msg
	}
	if p.details == "" {
		p.details = f.details
	}
	if p.status == 0 {
		p.status = f.status
	}
}

type fields struct {
	code, msg, details string
	status             int
	codeFromError      bool
}

// maxWalkDepth bounds the JSON tree walk; SF's errors are two or three levels
// deep, anything further is not an error description.
const maxWalkDepth = 8

// walk fills the roles from the tree, shallow keys before deeper ones and in
// sorted key order, so that the result does not depend on map order.
func (f *fields) walk(v any, depth int) {
	if depth > maxWalkDepth {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f.take(strings.ToLower(k), t[k])
		}
		for _, k := range keys {
			switch t[k].(type) {
			case map[string]any, []any:
				f.walk(t[k], depth+1)
			}
		}
	case []any:
		for _, e := range t {
			f.walk(e, depth+1)
		}
	}
}

func (f *fields) take(key string, v any) {
	switch key {
	case "code", "errorcode", "error_code":
		if s := scalar(v); s != "" && (f.code == "" || f.codeFromError) {
			f.code, f.codeFromError = s, false
		}
	case "error":
		// OAuth-style {"error":"invalid_client"}: a code, but a weaker one
		// than an explicit "code".
		if s, ok := v.(string); ok && f.code == "" {
			f.code, f.codeFromError = s, true
		}
	case "message", "error_description", "errormessage", "faultstring":
		if f.msg == "" {
			f.msg = text(v)
		}
	case "details", "detail":
		if f.details == "" {
			f.details = text(v)
		}
	case "status", "httpstatus", "errorhttpcode":
		if f.status == 0 {
			if n, err := strconv.Atoi(scalar(v)); err == nil && n >= 100 && n <= 599 {
				f.status = n
			}
		}
	}
}

func scalar(v any) string {
	switch t := v.(type) {
	case string:
		return strings.TrimSpace(t)
	case json.Number:
		return t.String()
	}
	return ""
}

// text turns a message-like value into one string: OData's {"lang","value"},
// arrays of details, nested {"message"}.
func text(v any) string {
	switch t := v.(type) {
	case string:
		return strings.TrimSpace(t)
	case json.Number:
		return t.String()
	case map[string]any:
		for _, k := range []string{"value", "message", "detail", "details", "description"} {
			if s := text(t[k]); s != "" {
				return s
			}
		}
	case []any:
		var parts []string
		for i, e := range t {
			if i == 8 {
				break
			}
			if s := text(e); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, "; ")
	}
	return ""
}

var fieldPattern = regexp.MustCompile(`"(code|errorCode|message|value|details|detail|error_description|status)"\s*:\s*("(?:[^"\\]|\\.)*("|$)|\d{3})`)

// scanFields reads fields out of JSON that does not parse, typically because
// the job log cut it off; a value cut short is still worth showing.
func (p *parsedBody) scanFields(s string) {
	var f fields
	for _, m := range fieldPattern.FindAllStringSubmatch(s, 32) {
		key, raw := strings.ToLower(m[1]), m[2]
		var val any
		if raw != "" && raw[0] == '"' {
			str := raw[1:]
			if m[3] == `"` {
				str = str[:len(str)-1]
			}
			// JSON's own unescaping: Go's would accept escapes such as
			// \200 that yield invalid UTF-8.
			var u string
			if err := json.Unmarshal([]byte(`"`+str+`"`), &u); err == nil {
				str = u
			}
			val = str
		} else {
			val = json.Number(raw)
		}
		if key == "value" {
			key = "message"
		}
		f.take(key, val)
	}
	p.merge(f)
}

// unescapeLogJSON undoes one level of JSON string escaping, as found when a
// job log is itself a JSON string; other text passes through.
func unescapeLogJSON(s string) string {
	if !strings.Contains(s, `\"`) {
		return s
	}
	return strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\n`, "\n", `\r`, "", `\t`, " ", `\/`, "/").Replace(s)
}

var bracketCode = regexp.MustCompile(`\[([A-Z][A-Z_]*[0-9]{2,})\]`)
var bareAuthCode = regexp.MustCompile(`(AUTH[0-9]{4})\b`)

func (p parsedBody) errorCode() string {
	for _, s := range []string{p.details, p.msg, p.text, strings.Join(p.segments, " "), p.raw} {
		if m := bracketCode.FindStringSubmatch(s); m != nil {
			return m[1]
		}
	}
	if p.code != "" {
		return truncateUTF8(validUTF8(p.code), 128)
	}
	if m := bareAuthCode.FindStringSubmatch(strings.ToUpper(p.raw)); m != nil {
		return m[1]
	}
	return ""
}

func (p parsedBody) message() string {
	var m string
	switch p.kind {
	case bodyJSON:
		m = joinMessages(p.msg, p.details)
		if m == "" && p.broken {
			// Better the raw text than nothing when no field could be read.
			m = p.raw
		}
	case bodyHTML:
		m = htmlMessage(p.segments)
	case bodyText:
		m = p.text
	}
	return truncateUTF8(validUTF8(collapseSpace(m)), maxMessageBytes)
}

// joinMessages combines SF's "message" and "details": for AUTH0032 the
// message says what failed and the details say why, and both are needed.
func joinMessages(msg, details string) string {
	msg, details = strings.TrimSpace(msg), strings.TrimSpace(details)
	switch {
	case msg == "":
		return details
	case details == "" || strings.Contains(msg, details):
		return msg
	case strings.Contains(details, msg):
		return details
	}
	if strings.ContainsAny(msg[len(msg)-1:], ".!?:;") {
		return msg + " " + details
	}
	return msg + ": " + details
}

// htmlMessage prefers the segment that names a known failure (an error page
// repeats it in its title and body, the shortest is the plain phrase); else
// it keeps every segment, since it cannot know which one matters.
func htmlMessage(segs []string) string {
	best := ""
	for _, s := range segs {
		l := strings.ToLower(s)
		for _, ph := range []string{phraseSSLCertificateError, phraseInvalidClientCert, phraseCredentialsRequired, phraseNoPermission, phraseTooManyRequests} {
			if strings.Contains(l, ph) && (best == "" || len(s) < len(best)) {
				best = s
			}
		}
	}
	if best != "" {
		return best
	}
	return strings.Join(segs, " ")
}

var (
	htmlHidden = regexp.MustCompile(`(?is)<(script|style)\b.*?</(script|style)\s*>`)
	htmlTag    = regexp.MustCompile(`(?s)<[^>]*>?`)
)

func htmlSegments(s string) []string {
	s = htmlHidden.ReplaceAllString(s, "\x00")
	s = htmlTag.ReplaceAllString(s, "\x00")
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(s, "\x00") {
		t := collapseSpace(html.UnescapeString(part))
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
		if len(out) == 32 {
			break
		}
	}
	return out
}

// retryAfter runs on the lower-cased body; without (?i) the regexp package
// can skip to "retry" instead of stepping through every byte.
var retryAfter = regexp.MustCompile(`retry(?:[\s-]*after|\s+in)\s*[:=]?\s*(\d{1,7})\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?)?\b`)

// maxRetryAfter caps what a body can make callers wait: a day is longer than
// any rate limit SF documents, and the cap keeps Duration from overflowing.
const maxRetryAfter = 24 * time.Hour

func parseRetryAfter(flat string) time.Duration {
	m := retryAfter.FindStringSubmatch(flat)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	unit := time.Second
	switch u := m[2]; {
	case u == "ms" || strings.HasPrefix(u, "milli"):
		unit = time.Millisecond
	case u == "m" || strings.HasPrefix(u, "min"):
		unit = time.Minute
	case u == "h" || strings.HasPrefix(u, "hour"):
		unit = time.Hour
	}
	d := time.Duration(n) * unit
	if d > maxRetryAfter {
		d = maxRetryAfter
	}
	return d
}

// validUTF8 guards the fields that end up in proto strings, which must be
// valid UTF-8 whatever escapes a body held.
func validUTF8(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}

func collapseSpace(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// truncateUTF8 cuts s to at most n bytes without splitting a character,
// because the result ends up in proto strings, which must be valid UTF-8.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
