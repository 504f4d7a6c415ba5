package diagnose

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certsync/certsync/service/sfhost"
)

// Finding is one failed call (or configuration error) found in an IPS job
// error, with its probable cause and what to do about it. It maps one to one
// onto certsync.v1.Finding.
type Finding struct {
	// URL is the URL IPS called, as the log shows it; empty for
	// configuration errors.
	URL string
	// Host is URL's host, lower-case, without port.
	Host string
	// CertHost: Host is SF's `cert.` mTLS host.
	CertHost bool
	// Path is URL's decoded path.
	Path string
	// Query holds URL's decoded query parameters in order, as "key=value"
	// (a parameter without "=" stays as its bare key).
	Query      []string
	HTTPStatus int
	// Body is the response body, trimmed, at most 4 KiB.
	Body             string
	ErrorCode        string
	ErrorMessage     string
	TenantID         string
	Cause            Cause
	Explanation      string
	Actions          []Step
	KBAs             []string
	SupportComponent string
	// LoadMode is "delta" or "full" when the chain says which load failed.
	LoadMode string
	// Evidence is the part of the job error this finding was read from,
	// trimmed, at most 4 KiB.
	Evidence string
	// SCIMUsers: URL is SF's SCIM Users endpoint, the one IPS reads with.
	SCIMUsers bool
	// RetryAfter is how long SF asked to wait, when the body says.
	RetryAfter time.Duration
}

// Result of diagnosing one job error.
type Result struct {
	// Findings, most specific first: Findings[0] is the main evidence.
	Findings []Finding
	TenantID string
	// Summary is one sentence for people.
	Summary string
}

// MaxTextBytes bounds the job error text. Real chains are a few KiB; the
// bound keeps one request from occupying the parser with megabytes.
const MaxTextBytes = 256 << 10

// maxExcerptBytes bounds Body and Evidence, as the API promises.
const maxExcerptBytes = 4 << 10

// maxFindings bounds the findings returned: a real chain has one or two, and
// the bound keeps a pathological text from producing a response larger than
// gRPC accepts. The most specific ones are kept.
const maxFindings = 50

// ErrTooLong matches (errors.Is) the error for a text over MaxTextBytes.
var ErrTooLong = errors.New("job error text too long")

// TooLongError says how long the text was; handlers put both numbers in the
// error details.
type TooLongError struct {
	Limit int
	Got   int
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("job error text is %d bytes; at most %d are accepted", e.Got, e.Limit)
}

// Is makes errors.Is(err, ErrTooLong) hold.
func (e *TooLongError) Is(target error) bool { return target == ErrTooLong }

// DiagnoseJobError reads the text of an IPS job error (a chain of "Caused
// by:" lines, as IPS shows it or as someone pasted it) and returns what failed
// and what to do. Text it does not recognise gives no findings and a nil
// error; only a text over MaxTextBytes is an error.
func DiagnoseJobError(text string) (Result, error) {
	if len(text) > MaxTextBytes {
		return Result{}, &TooLongError{Limit: MaxTextBytes, Got: len(text)}
	}
	d := newDoc(text)
	tenant := d.tenant()
	mode := d.loadMode()

	cands := d.httpCalls()
	cands = append(cands, d.transportFailures(cands)...)
	cands = append(cands, d.configErrors()...)
	cands = dedupe(cands)
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].rank != cands[j].rank {
			return cands[i].rank > cands[j].rank
		}
		return cands[i].pos > cands[j].pos
	})

	res := Result{TenantID: tenant}
	for _, c := range cands[:min(len(cands), maxFindings)] {
		res.Findings = append(res.Findings, c.finding(tenant, mode))
	}
	res.Summary = summarize(res.Findings, len(cands))
	return res, nil
}

// doc is the normalised text with the positions the parser keeps asking for.
type doc struct {
	s string
	// lower is s with ASCII letters lowered, byte for byte, so offsets agree.
	// Patterns run on it without (?i): case-folding defeats the regexp
	// package's literal-prefix scan and makes a 256 KiB text slow.
	lower      string
	lineStarts []int
	causedBy   []int // offsets of every "Caused by:"
	// consumed are the [start, end) ranges of bodies already read, so that a
	// URL or keyword inside a body is not taken for a call of its own.
	consumed [][2]int
}

const causedByMarker = "caused by:"

func newDoc(text string) *doc {
	s := strings.ToValidUTF8(text, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	d := &doc{s: s, lower: asciiLower(s), lineStarts: []int{0}}
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			d.lineStarts = append(d.lineStarts, i+1)
		}
	}
	d.causedBy = indexAll(d.lower, causedByMarker)
	return d
}

// asciiLower lowers ASCII letters only, so that every offset into the
// result is an offset into s (strings.ToLower may change lengths).
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// indexAll returns the offsets of every non-overlapping sub in s.
func indexAll(s, sub string) []int {
	var out []int
	for i := 0; ; {
		j := strings.Index(s[i:], sub)
		if j < 0 {
			return out
		}
		out = append(out, i+j)
		i += j + len(sub)
	}
}

func (d *doc) line(pos int) int {
	return sort.Search(len(d.lineStarts), func(i int) bool { return d.lineStarts[i] > pos }) - 1
}

func (d *doc) lineStart(pos int) int { return d.lineStarts[d.line(pos)] }

// lineEnd is the offset of the newline ending pos's line, or len(s).
func (d *doc) lineEnd(pos int) int {
	if l := d.line(pos); l+1 < len(d.lineStarts) {
		return d.lineStarts[l+1] - 1
	}
	return len(d.s)
}

// nextCausedBy returns the first "Caused by:" at or after pos, or len(s).
func (d *doc) nextCausedBy(pos int) int {
	i := sort.SearchInts(d.causedBy, pos)
	if i < len(d.causedBy) {
		return d.causedBy[i]
	}
	return len(d.s)
}

// segmentStart is where the excerpt for pos begins: its whole line, with any
// timestamp prefix, unless the line holds several "Caused by:" segments (a
// chain pasted as one line), in which case only pos's segment.
func (d *doc) segmentStart(pos int) int {
	ls := d.lineStart(pos)
	le := d.lineEnd(pos)
	first := sort.SearchInts(d.causedBy, ls)
	if first+1 >= len(d.causedBy) || d.causedBy[first+1] >= le {
		return ls
	}
	if i := sort.SearchInts(d.causedBy, pos+1) - 1; i >= first {
		return d.causedBy[i]
	}
	return ls
}

// isConsumed relies on bodies being recorded in order and disjoint.
func (d *doc) isConsumed(pos int) bool {
	i := sort.Search(len(d.consumed), func(i int) bool { return d.consumed[i][1] > pos })
	return i < len(d.consumed) && pos >= d.consumed[i][0]
}

var (
	// Patterns on doc.lower: lower-case, and no leading \b, which would also
	// defeat the literal-prefix scan.
	tenantPattern = regexp.MustCompile(`tenant\s+(?:context|with\s+id|id)[ \t]*[:=][ \t]*([^\s,;'"()\[\]<>\\]+)`)
	deltaPattern  = regexp.MustCompile(`delta\s+(?:load|read)\b`)
	fullPattern   = regexp.MustCompile(`full\s+(?:load|read)\b`)
)

func (d *doc) tenant() string {
	m := tenantPattern.FindStringSubmatchIndex(d.lower)
	if m == nil {
		return ""
	}
	return truncateUTF8(strings.TrimRight(d.s[m[2]:m[3]], ".:"), 128)
}

// loadMode is the first mode the chain names.
func (d *doc) loadMode() string {
	delta := deltaPattern.FindStringIndex(d.lower)
	full := fullPattern.FindStringIndex(d.lower)
	switch {
	case delta != nil && (full == nil || delta[0] < full[0]):
		return "delta"
	case full != nil:
		return "full"
	}
	return ""
}

// candidate is a finding before deduplication and before remedies.
type candidate struct {
	url    string
	status int
	body   string
	cls    Classification
	// evidence is the trimmed source excerpt.
	evidence string
	pos      int
	rank     int
	hasBody  bool
}

// Specificity ranks: the first finding is what the summary and the callers
// act on. A recognised fault in the setup beats an outage (an outage says
// nothing about the certificate), a body beats a bare status, and anything
// beats an answer that matches nothing.
const (
	rankUnrecognized = 1
	rankTransport    = 2
	rankTransient    = 3
	rankStatusOnly   = 4
	rankFull         = 5
)

var (
	urlPattern = regexp.MustCompile(`https?://[^\s<>"'\x60]+`) // on doc.lower
	// statusPattern covers the spellings seen in IPS chains and the HTTP
	// clients underneath ("statusCode: 401", "status code=401", "HTTP/1.1 401").
	statusPattern = regexp.MustCompile(`(?i)(?:\b(?:status[ _-]?code|response[ _-]?code|http[ _-]?status(?:[ _-]?code)?|status)\s*(?:[:=]|\bis\b|\bof\b)?\s*\(?\s*|\bHTTP/\d(?:\.\d)?\s+)([1-5]\d\d)\b`)
	bodyMarker    = regexp.MustCompile(`(?i)\b(?:(?:and|with)\s+)?(?:response[ _-]?body|response|body|payload|content)\b\s*[:=]?\s*`)
)

// statusWindow is how far from the URL a status may be and still belong to
// it; IPS puts it a few words after.
const statusWindow = 160

type urlHit struct {
	start, end int
	url        string
}

func (d *doc) urls() []urlHit {
	var out []urlHit
	for _, m := range urlPattern.FindAllStringIndex(d.lower, -1) {
		u := strings.TrimRight(d.s[m[0]:m[1]], ".,;:!?)]}'\"")
		if len(u) <= len("https://") {
			continue
		}
		out = append(out, urlHit{start: m[0], end: m[0] + len(u), url: u})
	}
	return out
}

type call struct {
	urlHit
	status   int
	afterPos int // where to look for the body
}

func (d *doc) findCalls(hits []urlHit) []call {
	var out []call
	// claimed is where the last status used ends: a status belongs to one
	// URL only.
	claimed := 0
	for i, h := range hits {
		le := d.lineEnd(h.end)
		win := d.s[h.end:min(le, h.end+statusWindow)]
		if cut := strings.IndexAny(win, "{<"); cut >= 0 {
			win = win[:cut]
		}
		if next := nextURLOnLine(hits, i, le); next >= 0 && next-h.end < len(win) {
			win = win[:next-h.end]
		}
		if m := statusPattern.FindStringSubmatchIndex(win); m != nil {
			st, _ := strconv.Atoi(win[m[2]:m[3]])
			out = append(out, call{urlHit: h, status: st, afterPos: h.end + m[1]})
			claimed = h.end + m[1]
			continue
		}
		// Some clients put the status first: "status 401 from https://...".
		ls := d.lineStart(h.start)
		from := max(ls, h.start-statusWindow)
		if i > 0 && hits[i-1].end > from {
			from = hits[i-1].end
		}
		from = min(max(from, claimed), h.start)
		before := d.s[from:h.start]
		if ms := statusPattern.FindAllStringSubmatchIndex(before, -1); ms != nil {
			m := ms[len(ms)-1]
			st, _ := strconv.Atoi(before[m[2]:m[3]])
			out = append(out, call{urlHit: h, status: st, afterPos: h.end})
		}
	}
	return out
}

func nextURLOnLine(hits []urlHit, i, lineEnd int) int {
	if i+1 < len(hits) && hits[i+1].start < lineEnd {
		return hits[i+1].start
	}
	return -1
}

// httpCalls finds every "invoking URL with status N [and body B]".
func (d *doc) httpCalls() []candidate {
	calls := d.findCalls(d.urls())
	lines := make([]int, len(calls))
	for i, c := range calls {
		lines[i] = d.line(c.start)
	}
	var out []candidate
	consumedUntil := 0
	for i, c := range calls {
		if c.start < consumedUntil {
			continue
		}
		// A body ends where the next "Caused by:" begins, or at the line of
		// the next call, whichever is first.
		boundary := d.nextCausedBy(c.afterPos)
		if n := sort.SearchInts(lines, lines[i]+1); n < len(calls) {
			boundary = min(boundary, d.lineStarts[lines[n]])
		}
		bs, be := d.bodyRange(c.afterPos, boundary)
		body := ""
		end := c.afterPos
		if bs >= 0 {
			body = strings.TrimSpace(d.s[bs:be])
			end = be
			d.consumed = append(d.consumed, [2]int{bs, be})
			consumedUntil = be
		}
		evStart := d.segmentStart(c.start)
		evEnd := min(d.lineEnd(end), max(d.nextCausedBy(end), end))
		cls := Classify(Response{Status: c.status, Body: body})
		if cls.Cause == CauseUnspecified {
			// A successful call the log mentions on the way is no failure.
			continue
		}
		rank := rankFull
		switch {
		case cls.Cause == CauseUnrecognizedResponse:
			rank = rankUnrecognized
		case cls.Cause.Transient():
			rank = rankTransient
		case body == "":
			rank = rankStatusOnly
		}
		out = append(out, candidate{
			url:      c.url,
			status:   c.status,
			body:     body,
			cls:      cls,
			evidence: excerpt(d.s[evStart:evEnd]),
			pos:      evStart,
			rank:     rank,
			hasBody:  body != "",
		})
	}
	return out
}

// bodyRange finds the body that follows a status, ending before boundary.
// It returns -1, -1 when the line names no body.
func (d *doc) bodyRange(pos, boundary int) (int, int) {
	if pos >= boundary {
		return -1, -1
	}
	le := min(d.lineEnd(pos), boundary)
	rest := d.s[pos:le]
	start := -1
	// The marker follows the status closely; looking further would be
	// quadratic on long lines and would pick up the log's own words.
	if m := bodyMarker.FindStringIndex(rest[:min(len(rest), 120)]); m != nil && m[0] <= 80 {
		start = pos + m[1]
	} else {
		t := strings.TrimLeft(rest, " \t,;:.-")
		if t != "" && strings.ContainsRune("{[<", rune(t[0])) {
			start = le - len(t)
		}
	}
	if start < 0 {
		return -1, -1
	}
	// The body may start on the next line ("Response:\n<html>..."), but only
	// if it looks like a document; a word on the next line is the log's.
	i := start
	for i < boundary && (d.s[i] == ' ' || d.s[i] == '\t') {
		i++
	}
	if i < boundary && d.s[i] == '\n' {
		j := i
		for j < boundary && strings.ContainsRune(" \t\n", rune(d.s[j])) {
			j++
		}
		if j < boundary && strings.ContainsRune("{[<", rune(d.s[j])) {
			i = j
		} else {
			return i, i
		}
	}
	if i >= boundary {
		return i, i
	}
	switch d.s[i] {
	case '{', '[':
		if e := balancedEnd(d.s, i, boundary, true); e > 0 {
			return i, e
		}
		if e := balancedEnd(d.s, i, boundary, false); e > 0 {
			return i, e
		}
		return i, d.jsonContinuation(i, boundary)
	case '<':
		if e := indexFold(d.s[i:boundary], "</html>"); e >= 0 {
			return i, i + e + len("</html>")
		}
		return i, d.blockEnd(i, boundary)
	}
	return i, min(d.lineEnd(i), boundary)
}

// balancedEnd returns the offset after the bracket that closes the one at
// start, or -1. With strict, brackets inside JSON strings do not count; the
// lax pass serves JSON whose quotes a log escaped.
func balancedEnd(s string, start, limit int, strict bool) int {
	depth := 0
	inStr, esc := false, false
	for i := start; i < limit; i++ {
		c := s[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			if strict {
				inStr = true
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}

// jsonContinuation extends a JSON body cut short by the log over the lines
// that still look like pretty-printed JSON, and stops at the first that does
// not (the log going on, or an article's prose after a pasted chain).
func (d *doc) jsonContinuation(start, boundary int) int {
	end := min(d.lineEnd(start), boundary)
	for end < boundary {
		next := end + 1
		le := min(d.lineEnd(next), boundary)
		t := strings.TrimSpace(d.s[next:le])
		if t == "" || !strings.ContainsRune(`"{}[],`, rune(t[0])) {
			break
		}
		end = le
	}
	return end
}

var stackFrame = regexp.MustCompile(`^\s*(?:at\s+[\w$.<>/]+\(|\.\.\.\s*\d+\s+more\b)`)

// blockEnd extends an HTML body without its closing tag to the first blank
// line or stack frame: past that it is no longer the page.
func (d *doc) blockEnd(start, boundary int) int {
	end := min(d.lineEnd(start), boundary)
	for end < boundary {
		next := end + 1
		le := min(d.lineEnd(next), boundary)
		ln := d.s[next:le]
		if strings.TrimSpace(ln) == "" || stackFrame.MatchString(ln) {
			break
		}
		end = le
	}
	return end
}

func indexFold(s, sub string) int {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], sub) {
			return i
		}
	}
	return -1
}

// transportWords are the exceptions and messages of a call that got no HTTP
// answer at all, lower-case ("timed out" covers read, connect and connection
// timeouts).
var transportWords = []string{
	"timed out",
	"timeoutexception",
	"connectexception",
	"connection refused",
	"connection reset",
	"socketexception",
	"unknownhostexception",
	"noroutetohostexception",
	"nohttpresponseexception",
	"broken pipe",
	"pkix path building failed",
	"unable to find valid certification path",
	"sslhandshakeexception",
	"received fatal alert",
}

var (
	// tlsAlertPattern: alerts a server sends when it refuses the client's
	// certificate. That is the TLS layer rejecting IPS's certificate, not an
	// outage, so it must not be retried away.
	tlsAlertPattern = regexp.MustCompile(`(?i)received fatal alert:\s*(bad_certificate|certificate_unknown|certificate_expired|certificate_revoked|unknown_ca|certificate_required)`)
)

// nearbyLines is how far above a transport exception its URL may be: the
// chain names the call, then the exception, in consecutive "Caused by:" lines.
const nearbyLines = 3

// transportFailures finds calls that got no HTTP answer. An exception without
// a URL nearby is dropped: it may be about anything (IPS's own database, the
// mail server), and a finding must name what failed.
func (d *doc) transportFailures(httpCands []candidate) []candidate {
	answered := map[string]bool{}
	for _, c := range httpCands {
		answered[c.url] = true
	}
	var hits []urlHit
	for _, h := range d.urls() {
		if !d.isConsumed(h.start) {
			hits = append(hits, h)
		}
	}
	var marks [][2]int
	for _, w := range transportWords {
		for _, i := range indexAll(d.lower, w) {
			marks = append(marks, [2]int{i, i + len(w)})
		}
	}
	sort.Slice(marks, func(i, j int) bool { return marks[i][0] < marks[j][0] })
	var out []candidate
	seenLine := map[int]bool{}
	for _, m := range marks {
		ln := d.line(m[0])
		if seenLine[ln] || d.isConsumed(m[0]) {
			continue
		}
		seenLine[ln] = true
		h, ok := d.nearestURL(hits, m[0])
		if !ok || answered[h.url] {
			continue
		}
		segStart := d.segmentStart(m[0])
		segEnd := min(d.lineEnd(m[0]), max(d.nextCausedBy(m[0]), m[1]))
		seg := d.s[segStart:segEnd]
		cause, rank := CauseTransportError, rankTransport
		if tlsAlertPattern.MatchString(seg) {
			cause, rank = CauseTLSRejected, rankStatusOnly
		}
		msg := messageOf(seg)
		out = append(out, candidate{
			url:      h.url,
			cls:      Classification{Cause: cause, ErrorMessage: msg},
			evidence: excerpt(seg),
			pos:      segStart,
			rank:     rank,
		})
	}
	return out
}

func (d *doc) nearestURL(hits []urlHit, pos int) (urlHit, bool) {
	ln := d.line(pos)
	var best urlHit
	found := false
	from := sort.Search(len(hits), func(i int) bool { return d.line(hits[i].start) >= ln-nearbyLines })
	for _, h := range hits[from:] {
		hl := d.line(h.start)
		switch {
		case hl == ln:
			return h, true
		case hl < ln && ln-hl <= nearbyLines:
			best, found = h, true // later hits are nearer
		case hl == ln+1 && !found:
			return h, true
		}
		if hl > ln+1 {
			break
		}
	}
	return best, found
}

// The wordings of a missing company id, on doc.lower: "Property
// sf.company.id is missing", "Missing required property: sf.company.id",
// "company id is not set".
var (
	companyIDAfter  = regexp.MustCompile(`^sf\.company\.id\b['"]?\s+(?:is\s+)?(?:missing|required|not\s+(?:set|defined|specified|configured|provided|maintained)|empty|blank|undefined)`)
	companyIDBefore = regexp.MustCompile(`\b(?:missing|no|required)\s+(?:mandatory\s+|required\s+)?property\s*[:=]?\s*['"]?$`)
	companyIDPhrase = regexp.MustCompile(`company\s*id\s+(?:is\s+)?(?:missing|not\s+(?:set|provided|specified|configured))`)
)

// configErrors finds errors IPS raises before calling SF; they name no URL.
func (d *doc) configErrors() []candidate {
	var hits [][2]int
	for _, i := range indexAll(d.lower, "sf.company.id") {
		if m := companyIDAfter.FindStringIndex(d.lower[i:min(len(d.lower), i+100)]); m != nil {
			hits = append(hits, [2]int{i, i + m[1]})
		} else if companyIDBefore.MatchString(d.lower[max(0, i-60):i]) {
			hits = append(hits, [2]int{i, i + len("sf.company.id")})
		}
	}
	for _, m := range companyIDPhrase.FindAllStringIndex(d.lower, -1) {
		hits = append(hits, [2]int{m[0], m[1]})
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i][0] < hits[j][0] })
	for _, m := range hits {
		if d.isConsumed(m[0]) {
			continue
		}
		segStart := d.segmentStart(m[0])
		segEnd := min(d.lineEnd(m[0]), max(d.nextCausedBy(m[1]), m[1]))
		seg := d.s[segStart:segEnd]
		// One is enough: IPS stops at the first configuration error.
		return []candidate{{
			cls:      Classification{Cause: CauseCompanyIDMissing, ErrorMessage: messageOf(seg)},
			evidence: excerpt(seg),
			pos:      segStart,
			rank:     rankFull,
		}}
	}
	return nil
}

// messageOf is a segment without its log prefix and "Caused by:", the part
// that reads as the exception's message.
func messageOf(seg string) string {
	if i := strings.LastIndex(asciiLower(seg), causedByMarker); i >= 0 {
		seg = seg[i+len(causedByMarker):]
	}
	return truncateUTF8(collapseSpace(seg), maxMessageBytes)
}

// dedupe merges the lines that describe one failure: IPS repeats the failing
// call at several depths of the chain, in different words. The deepest one
// with a body is kept as the evidence.
func dedupe(cands []candidate) []candidate {
	key := func(c candidate) string {
		errKey := c.cls.ErrorCode
		if errKey == "" {
			errKey = strings.ToLower(collapseSpace(c.body))
		}
		return fmt.Sprintf("%d\x00%s\x00%d\x00%s", c.cls.Cause, c.url, c.status, errKey)
	}
	withBody := map[string]bool{}
	for _, c := range cands {
		if c.hasBody {
			withBody[c.url+"\x00"+strconv.Itoa(c.status)] = true
		}
	}
	idx := map[string]int{}
	var out []candidate
	for _, c := range cands {
		if c.status != 0 && !c.hasBody && withBody[c.url+"\x00"+strconv.Itoa(c.status)] {
			continue
		}
		k := key(c)
		if i, ok := idx[k]; ok {
			out[i] = c
			continue
		}
		idx[k] = len(out)
		out = append(out, c)
	}
	return out
}

func (c candidate) finding(tenant, mode string) Finding {
	f := Finding{
		URL:          c.url,
		HTTPStatus:   c.status,
		Body:         excerpt(c.body),
		ErrorCode:    c.cls.ErrorCode,
		ErrorMessage: c.cls.ErrorMessage,
		TenantID:     tenant,
		Cause:        c.cls.Cause,
		LoadMode:     mode,
		Evidence:     c.evidence,
		RetryAfter:   c.cls.RetryAfter,
	}
	var s Situation
	if c.url != "" {
		f.Host, f.Path, f.Query = splitURL(c.url)
		kind := sfhost.Classify(f.Host)
		f.CertHost = kind == sfhost.KindCertHost
		f.SCIMUsers = isSCIMUsers(f.Path)
		s.HostKnown = kind != sfhost.KindUnknownDomain
		s.CertHost = f.CertHost
		if kind == sfhost.KindPlainHost {
			s.SuggestedCertHost = sfhost.CertHostFor(f.Host)
		}
	}
	s.RetryAfter = c.cls.RetryAfter
	f.Actions = Remediation(f.Cause, s)
	f.Explanation = Explanation(f.Cause, s)
	f.KBAs = references(f.Cause, s, f.Actions)
	f.SupportComponent = EscalationComponent(f.Actions)
	return f
}

// splitURL takes a URL apart by hand when net/url refuses it: a log may hold a
// URL with a bad escape or a stray character, and its host still matters.
func splitURL(raw string) (host, path string, query []string) {
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	rawQuery := ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, rawQuery = rest[:i], rest[i+1:]
	}
	authority, rawPath := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, rawPath = rest[:i], rest[i:]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	host = authority
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	path = rawPath
	if p, err := url.PathUnescape(rawPath); err == nil {
		path = p
	}
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		k, v, hasEq := strings.Cut(part, "=")
		k, v = unescapeQuery(k), unescapeQuery(v)
		if hasEq {
			query = append(query, k+"="+v)
		} else {
			query = append(query, k)
		}
	}
	return host, strings.ToValidUTF8(path, "\uFFFD"), query
}

func unescapeQuery(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return strings.ToValidUTF8(u, "\uFFFD")
	}
	return s
}

const scimUsersPath = "/rest/iam/scim/v2/users"

func isSCIMUsers(path string) bool {
	p := strings.ToLower(strings.TrimRight(path, "/"))
	return strings.HasSuffix(p, scimUsersPath)
}

func excerpt(s string) string {
	return truncateUTF8(strings.TrimSpace(s), maxExcerptBytes)
}

// summarize writes one sentence about the main finding; total counts the
// findings before maxFindings cut them.
func summarize(fs []Finding, total int) string {
	if len(fs) == 0 {
		return "Nothing known was found in the job error text: no failed SF call and no known configuration error."
	}
	f := fs[0]
	var b strings.Builder
	b.WriteString(causePhrase(f))
	if f.Host != "" {
		b.WriteString(" at ")
		b.WriteString(f.Host)
	}
	if fix := fixPhrase(f); fix != "" {
		b.WriteString(": ")
		b.WriteString(fix)
	}
	if n := total - 1; n == 1 {
		b.WriteString(" (1 more finding)")
	} else if n > 1 {
		fmt.Fprintf(&b, " (%d more findings)", n)
	}
	b.WriteString(".")
	return b.String()
}

func statusNote(f Finding) string {
	var parts []string
	if f.HTTPStatus != 0 {
		parts = append(parts, strconv.Itoa(f.HTTPStatus))
	}
	if f.ErrorCode != "" && len(f.ErrorCode) <= 32 {
		parts = append(parts, f.ErrorCode)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, " ") + ")"
}

func causePhrase(f Finding) string {
	note := statusNote(f)
	switch f.Cause {
	case CauseInvalidClientCertificate:
		return "SF rejected IPS's client certificate" + note
	case CauseTLSRejected:
		return "SF's TLS layer rejected IPS's client certificate" + note
	case CauseCredentialsRequired:
		return "SF asked for credentials instead of accepting the client certificate" + note
	case CausePermissionDenied:
		return "SF accepted the certificate but denied reading users" + note
	case CauseCompanyIDMissing:
		return "The IPS source system lacks sf.company.id, which certificate authentication requires"
	case CauseRateLimited:
		return "SF rate-limited IPS" + note
	case CauseServerError:
		return "SF failed with a server error" + note
	case CauseTransportError:
		return "IPS could not reach SF"
	}
	return "SF answered in a way that matches no known failure" + note
}

func fixPhrase(f Finding) string {
	var parts []string
	for _, st := range f.Actions {
		var p string
		switch st.Action {
		case ActionCompareFingerprints:
			p = "compare the fingerprints in IPS and SF"
		case ActionReregister:
			p = "delete and re-upload the same certificate in SF"
		case ActionUploadActiveCertificate:
			p = "upload IPS's Active certificate to SF"
		case ActionFixCompanyID:
			p = "set sf.company.id to SF's company id"
			if f.Cause == CauseInvalidClientCertificate {
				p = "check sf.company.id"
			}
		case ActionFixURL:
			p = "point URL at SF's cert. host"
			if h := sfhost.CertHostFor(f.Host); h != "" {
				p = "point URL at " + h
			}
		case ActionFixMappingFields:
			p = "fix the mapping's integration and login name"
		case ActionRenewCertificate:
			p = "renew the certificate first if it expired"
		case ActionEscalate:
			p = "escalate to " + st.SupportComponent
		case ActionRetryLater:
			p = "retry later"
			if f.RetryAfter > 0 {
				p = "retry after " + f.RetryAfter.String()
			}
		}
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ", then ")
}
