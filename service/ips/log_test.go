package ips

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"strings"
	"testing"
)

const chain = "Cannot execute provisioning job in tenant context: t-1\n" +
	"Caused by: Error during execution on behalf of tenant with ID: t-1\n" +
	"Caused by: Executing delta load failed.\n"

// zipOf builds a zip of name/content pairs.
func zipOf(t testing.TB, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		w, err := zw.Create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(files[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLogText(t *testing.T) {
	tests := []struct {
		name string
		zip  []byte
		want string
	}{
		{"empty input", nil, ""},
		{"one file", zipOf(t, "job.log", chain), chain},
		{"no final newline", zipOf(t, "job.log", "a"), "a\n"},
		{"files in order, folders skipped", zipOf(t, "logs/", "", "logs/1.log", "one\n", "logs/2.log", "two"), "one\ntwo\n"},
		{"BOM dropped, bad UTF-8 replaced", zipOf(t, "a.log", "\xef\xbb\xbfok \xff\n"), "ok \uFFFD\n"},
		{"binary skipped", zipOf(t, "a.bin", "\x00\x01", "b.log", "text\n"), "text\n"},
		{"unsafe names are only names", zipOf(t, "../../etc/x.log", "x\n"), "x\n"},
		{"empty zip", zipOf(t), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LogText(tc.zip)
			if err != nil || got != tc.want {
				t.Errorf("LogText = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestLogTextRefuses(t *testing.T) {
	// Small bounds keep the test fast; TestLogTextBombAtTheRealBound uses
	// the real one.
	const maxFiles, maxText = 8, 1 << 20
	many := make([]string, 0, 2*(maxFiles+1))
	for i := range maxFiles + 1 {
		many = append(many, fmt.Sprintf("%d.log", i), "x")
	}
	bomb := zipOf(t, "bomb.log", strings.Repeat("a", maxText+1))
	split := zipOf(t, "1.log", strings.Repeat("a", maxText/2+1), "2.log", strings.Repeat("b", maxText/2+1))
	tests := []struct {
		name string
		zip  []byte
		is   error
		want string
	}{
		{"not a zip", []byte("<html>Service Unavailable</html>"), ErrNotZip, ""},
		{"too many entries", zipOf(t, many...), nil, "entries"},
		{"bomb", bomb, ErrLogTooLarge, ""},
		{"bomb in parts", split, ErrLogTooLarge, ""},
		{"lying sizes", lyingZip(t), nil, "zip"},
		{"only binary", zipOf(t, "a.bin", "\x00"), nil, "no text file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := logText(tc.zip, maxFiles, maxText)
			if err == nil {
				t.Fatalf("logText = %d bytes, want an error", len(got))
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// Exactly at the bounds is fine.
	if s, err := logText(zipOf(t, "a.log", strings.Repeat("a", maxText-1)+"\n"), maxFiles, maxText); err != nil || len(s) != maxText {
		t.Errorf("at the bound: %d bytes, %v", len(s), err)
	}
}

// TestLogTextBombAtTheRealBound: a zip under 1 MiB that inflates past
// MaxLogTextBytes is refused without inflating it all. The deflate stream is
// one flushed 1 MiB chunk repeated, so building it is cheap.
func TestLogTextBombAtTheRealBound(t *testing.T) {
	chunk := bytes.Repeat([]byte("a"), 1<<20)
	var one bytes.Buffer
	fw, _ := flate.NewWriter(&one, flate.BestSpeed)
	fw.Write(chunk)
	fw.Flush()
	var final bytes.Buffer
	fw, _ = flate.NewWriter(&final, flate.BestSpeed)
	fw.Close()
	n := MaxLogTextBytes>>20 + 2
	stream := append(bytes.Repeat(one.Bytes(), n), final.Bytes()...)
	crc := uint32(0)
	for range n {
		crc = crc32.Update(crc, crc32.IEEETable, chunk)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "bomb.log", Method: zip.Deflate, CRC32: crc,
		CompressedSize64: uint64(len(stream)), UncompressedSize64: uint64(n << 20)})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(stream)
	zw.Close()
	if buf.Len() > 1<<20 {
		t.Fatalf("the bomb is %d bytes", buf.Len())
	}
	if _, err := LogText(buf.Bytes()); !errors.Is(err, ErrLogTooLarge) {
		t.Fatalf("err %v, want ErrLogTooLarge", err)
	}
	var many []string
	for i := range MaxLogFiles + 1 {
		many = append(many, fmt.Sprintf("%d.log", i), "x")
	}
	if _, err := LogText(zipOf(t, many...)); err == nil || !strings.Contains(err.Error(), "entries") {
		t.Errorf("%d entries: %v", MaxLogFiles+1, err)
	}
}

// lyingZip declares 10 bytes for an entry that inflates to 1 MiB.
func lyingZip(t *testing.T) []byte {
	t.Helper()
	plain := bytes.Repeat([]byte("a"), 1<<20)
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	fw.Write(plain)
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name: "liar.log", Method: zip.Deflate, CRC32: crc32.ChecksumIEEE(plain[:10]),
		CompressedSize64: uint64(comp.Len()), UncompressedSize64: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportJobLog(t *testing.T) {
	good := zipOf(t, "job.log", chain)
	tests := []struct {
		name    string
		answer  func(w http.ResponseWriter)
		want    string
		wantErr error
	}{
		{"zip", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/zip")
			w.Write(good)
		}, chain, nil},
		{"no content", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }, "", nil},
		{"not a zip", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>login</html>")
		}, "", ErrNotZip},
		{"too large", func(w http.ResponseWriter) {
			w.Write([]byte("PK\x03\x04"))
			w.Write(make([]byte, MaxLogBytes))
		}, "", ErrLogTooLarge},
		{"unknown job", func(w http.ResponseWriter) { w.WriteHeader(http.StatusNotFound) }, "", ErrJobNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls counter
			tn := newTenant(t, func(w http.ResponseWriter, r *http.Request) {
				calls.add(r.URL.Path)
				if q := r.URL.Query(); q.Get("action") != "export" || q.Get("logType") != "ERROR" {
					t.Errorf("query %s", r.URL.RawQuery)
				}
				tc.answer(w)
			})
			c, _ := tn.client(t, Basic, nil)
			got, err := c.JobLogText(context.Background(), "job-1")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				var e *Error
				if !errors.As(err, &e) || e.Transient {
					t.Errorf("err %#v, want a permanent *Error", err)
				}
			} else if err != nil || got != tc.want {
				t.Fatalf("JobLogText = %q, %v; want %q", got, err, tc.want)
			}
			if n := calls.get(logPath); n != 1 {
				t.Errorf("%d calls", n)
			}
		})
	}
}

func TestParseJobAnswer(t *testing.T) {
	const uuid = "3f6b2a90-5c1d-4e7f-9a2b-8c0d1e2f3a4b"
	loc := func(v string) http.Header { return http.Header{"Location": {v}} }
	tests := []struct {
		name       string
		body       string
		header     http.Header
		wantID     string
		wantStatus string
	}{
		{"jobId", `{"jobId":"` + uuid + `"}`, nil, uuid, ""},
		{"job_id and status", `{"job_id":"j1","status":"RUNNING"}`, nil, "j1", StatusRunning},
		{"JobID", `{"JobID":"j2"}`, nil, "j2", ""},
		{"numeric id", `{"id":12345678901234567890}`, nil, "12345678901234567890", ""},
		{"jobId beats id", `{"id":"req-1","jobId":"j3"}`, nil, "j3", ""},
		{"nested data", `{"data":{"jobId":"j4","jobStatus":"finished with error"}}`, nil, "j4", StatusFinishedWithError},
		{"nested job id", `{"id":"tenant","job":{"id":"j5","state":"Pending-Restart"}}`, nil, "j5", StatusPendingRestart},
		{"array of one", `[{"jobId":"j6"}]`, nil, "j6", ""},
		{"JSON string", `"` + uuid + `"`, nil, uuid, ""},
		{"JSON number", `42`, nil, "42", ""},
		{"bare text", uuid + "\n", nil, uuid, ""},
		{"Location", ``, loc("/ips/service/publicapi/v1/jobs/" + uuid), uuid, ""},
		{"absolute Location, escaped", `{}`, loc("https://t.example/x/jobs/j%3A7/"), "j:7", ""},
		{"JSON wins over Location", `{"jobId":"j8"}`, loc("/jobs/j9"), "j8", ""},
		{"word without digits is no id", `OK`, nil, "", ""},
		{"Location of a collection", ``, loc("/ips/service/publicapi/v1/jobs"), "", ""},
		{"HTML", `<html><body>Job 1 started</body></html>`, nil, "", ""},
		{"id with a slash", `{"jobId":"a/b"}`, nil, "", ""},
		{"unknown status kept", `{"jobId":"j","status":"Queued"}`, nil, "j", "Queued"},
		{"BOM", "\xef\xbb\xbf{\"jobId\":\"j10\"}", nil, "j10", ""},
		{"empty", ``, nil, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, status := parseJobAnswer([]byte(tc.body), tc.header)
			if id != tc.wantID || status != tc.wantStatus {
				t.Errorf("got %q %q, want %q %q", id, status, tc.wantID, tc.wantStatus)
			}
		})
	}
}

func TestNormalizeStatus(t *testing.T) {
	for in, want := range map[string]string{
		"Success": StatusSuccess, "SUCCESS": StatusSuccess, "finished_with_error": StatusFinishedWithError,
		"Running With Error": StatusRunningWithError, "MANUALLY_TERMINATED": StatusManuallyTerminated,
		"pending restart": StatusPendingRestart, " running ": StatusRunning, "Weird": "Weird",
	} {
		if got := NormalizeStatus(in); got != want {
			t.Errorf("NormalizeStatus(%q) = %q, want %q", in, got, want)
		}
	}
	if (Job{Status: StatusRunningWithError}).Done() || !(Job{Status: StatusManuallyTerminated}).Done() {
		t.Error("Done")
	}
}

func FuzzLogText(f *testing.F) {
	f.Add(zipOf(f, "job.log", chain))
	f.Add(zipOf(f, "a/", "", "a/b.log", "x\xff"))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Add([]byte("not a zip"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := LogText(b)
		if err == nil && len(s) > MaxLogTextBytes+MaxLogFiles {
			t.Errorf("%d bytes of text", len(s))
		}
	})
}

func FuzzParseJobAnswer(f *testing.F) {
	f.Add(`{"jobId":"j1","status":"RUNNING"}`, "")
	f.Add(`{"data":{"id":1}}`, "/jobs/abc1")
	f.Add(`[{"job":{"id":"x"}}]`, "https://h/%zz")
	f.Fuzz(func(t *testing.T, body, location string) {
		id, _ := parseJobAnswer([]byte(body), http.Header{"Location": {location}})
		if id != "" && !validID(id) && !isNumber(id) {
			t.Errorf("invalid id %q", id)
		}
	})
}

func isNumber(s string) bool {
	return strings.Trim(s, "0123456789.eE+-") == ""
}
