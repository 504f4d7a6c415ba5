package ips

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Bounds of LogText: a real export holds one or a few text files of at most
// a few MiB.
const (
	// MaxLogFiles bounds the entries of the zip, folders included.
	MaxLogFiles = 64
	// MaxLogTextBytes bounds the text of all files together, uncompressed:
	// what a zip bomb would blow up is never read past it.
	MaxLogTextBytes = 32 << 20
)

// LogText reads a job log export: the text of its files, in the zip's
// order, each ending with a newline. Folders are skipped, and so are files
// that are not text (they hold NUL bytes); a UTF-8 byte order mark is
// dropped, and invalid UTF-8 becomes U+FFFD. Empty input gives "". Errors:
// more than MaxLogFiles entries, more than MaxLogTextBytes of text (matches
// ErrLogTooLarge), not a zip (ErrNotZip), a broken or unsupported entry.
// Only the sizes actually read count: the sizes the zip declares are not
// trusted.
func LogText(zipBytes []byte) (string, error) {
	return logText(zipBytes, MaxLogFiles, MaxLogTextBytes)
}

// logText is LogText with its bounds as parameters, for tests.
func logText(zipBytes []byte, maxFiles int, maxText int64) (string, error) {
	if len(zipBytes) == 0 {
		return "", nil
	}
	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	// Names are never used as paths here, so names that would be unsafe to
	// extract (ErrInsecurePath) are harmless.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return "", fmt.Errorf("ips: %w: %v", ErrNotZip, err)
	}
	if len(zr.File) > maxFiles {
		return "", fmt.Errorf("ips: the job log export holds %d entries, more than %d", len(zr.File), maxFiles)
	}
	var out strings.Builder
	var total int64
	binary := 0
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || strings.HasSuffix(f.Name, "/") {
			continue
		}
		data, err := readEntry(f, maxText-total, maxText)
		if err != nil {
			return "", err
		}
		total += int64(len(data))
		if bytes.IndexByte(data, 0) >= 0 {
			binary++
			continue
		}
		data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
		if len(data) == 0 {
			continue
		}
		out.WriteString(strings.ToValidUTF8(string(data), "\uFFFD"))
		if data[len(data)-1] != '\n' {
			out.WriteByte('\n')
		}
	}
	if out.Len() == 0 && binary > 0 {
		return "", fmt.Errorf("ips: the job log export holds no text file (%d binary)", binary)
	}
	return out.String(), nil
}

// readEntry reads one entry, at most budget bytes of the limit.
func readEntry(f *zip.File, budget, limit int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("ips: job log entry %q: %w", excerpt([]byte(f.Name)), err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, budget+1))
	if err != nil {
		return nil, fmt.Errorf("ips: job log entry %q: %w", excerpt([]byte(f.Name)), err)
	}
	if int64(len(data)) > budget {
		return nil, fmt.Errorf("%w: the job log export's text exceeds %d bytes", ErrLogTooLarge, limit)
	}
	return data, nil
}
