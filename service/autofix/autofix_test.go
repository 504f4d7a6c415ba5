package autofix

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/certsync/certsync/service/compare"
	"github.com/certsync/certsync/service/config"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/scim"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

func TestWindows(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse("Mon 2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		window string
		t      string
		in     bool
	}{
		{"Mon-Fri 22:00-04:00", "Mon 2026-11-23 23:00", true},
		{"Mon-Fri 22:00-04:00", "Tue 2026-11-24 03:59", true}, // Monday's window, past midnight
		{"Mon-Fri 22:00-04:00", "Tue 2026-11-24 04:00", false},
		{"Mon-Fri 22:00-04:00", "Sat 2026-11-28 02:00", true}, // Friday's window
		{"Mon-Fri 22:00-04:00", "Mon 2026-11-23 02:00", false},
		{"Mon-Fri 22:00-04:00", "Sat 2026-11-28 23:00", false},
		{"Sat 00:00-24:00", "Sat 2026-11-28 12:00", true},
		{"Sat 00:00-24:00", "Sun 2026-11-29 00:00", false},
		{"Mon,Wed 01:00-02:00", "Wed 2026-11-25 01:30", true},
		{"Mon,Wed 01:00-02:00", "Tue 2026-11-24 01:30", false},
		{"Fri-Mon 10:00-11:00", "Sun 2026-11-29 10:30", true}, // a range across the week's end
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.window)
		if err != nil {
			t.Fatalf("%s: %v", tt.window, err)
		}
		if got := w.Contains(at(tt.t)); got != tt.in {
			t.Errorf("%s at %s = %v, want %v", tt.window, tt.t, got, tt.in)
		}
	}
	for _, bad := range []string{"", "Mon", "Funday 10:00-11:00", "Mon 10:00", "Mon 25:00-26:00", "Mon 10:00-10:00", "Mon 10:60-11:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestClassify: only the patterns re-registration fixes, seen on complete
// evidence that speaks for IPS's own mapping.
func TestClassify(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	src := &x509cert.Summary{SHA256: "AA", NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(300 * 24 * time.Hour), ClientAuth: true}
	other := &x509cert.Summary{SHA256: "BB", NotBefore: src.NotBefore, NotAfter: src.NotAfter, ClientAuth: true}
	auth0032 := &scim.Result{Outcome: scim.InvalidClientCertificate, HTTPStatus: 401, ErrorCode: "AUTH0032"}
	ev := func(identity string, probeCert *x509cert.Summary, result compare.Result, same bool, probe *scim.Result) *gate.Evidence {
		e := &gate.Evidence{Connection: "c", CheckedAt: now, Source: src, ProbeCert: probeCert, Probe: probe,
			Comparison: &compare.Comparison{Result: result, SameSubjectAndIssuer: same, Etag: "e"}}
		e.Config.Probe.Identity = identity
		return e
	}
	for _, tc := range []struct {
		name string
		ev   *gate.Evidence
		want Pattern
	}{
		{"the seed's, IPS's own certificate", ev("ips", src, compare.ResultMatch, true, auth0032), PatternNotSynced},
		{"the seed's, a separate identity's rejection", ev("separate", other, compare.ResultMatch, true, auth0032), PatternNone},
		{"the seed's, the probe not updated after a renewal", ev("ips", other, compare.ResultMatch, true, auth0032), PatternNone},
		{"renewal pending, SF rejects the new one", ev("ips", src, compare.ResultMismatch, true, auth0032), PatternRenewalPending},
		{"renewal pending, separate probe authenticates", ev("separate", other, compare.ResultMismatch, true, &scim.Result{Outcome: scim.Authenticated}), PatternRenewalPending},
		{"renewal pending during an SF outage", ev("ips", src, compare.ResultMismatch, true, &scim.Result{Outcome: scim.Unreachable}), PatternNone},
		{"renewal pending, SF wants credentials", ev("ips", src, compare.ResultMismatch, true, &scim.Result{Outcome: scim.CredentialsRequired}), PatternNone},
		{"another certificate altogether", ev("ips", src, compare.ResultMismatch, false, auth0032), PatternNone},
		{"healthy", ev("ips", src, compare.ResultMatch, true, &scim.Result{Outcome: scim.Authenticated}), PatternNone},
	} {
		if got := Classify(tc.ev, now); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	regErr := ev("ips", src, compare.ResultMatch, true, auth0032)
	regErr.RegistryErr = errors.New("registry down")
	if got := Classify(regErr, now); got != PatternNone {
		t.Errorf("registry unreadable: %q", got)
	}
	if got := Classify(nil, now); got != PatternNone {
		t.Errorf("no evidence: %q", got)
	}
}

// TestLastDay: the budget and the "did not help" rule read every operation
// of the last day, not one page, and a later cancelled run does not hide a
// failed one.
func TestLastDay(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	n := 0
	add := func(op store.Operation) {
		n++
		op.ID, op.Connection = fmt.Sprintf("op-%03d", n), "c"
		if op.UpdateTime.IsZero() {
			op.UpdateTime = op.CreateTime
		}
		if _, err := st.CreateOperation(ctx, &op, nil); err != nil {
			t.Fatal(err)
		}
	}
	add(store.Operation{State: store.StateFailed, Automatic: true, CreateTime: now.Add(-3 * time.Hour), EndTime: now.Add(-3 * time.Hour)})
	add(store.Operation{State: store.StateCancelled, CreateTime: now.Add(-2 * time.Hour), EndTime: now.Add(-2 * time.Hour)})
	for i := 0; i < 150; i++ { // a job hook's dry runs
		add(store.Operation{State: store.StateSucceeded, ValidateOnly: true, CreateTime: now.Add(-time.Hour + time.Duration(i)*time.Second)})
	}
	r, err := New(Options{Store: st, Connections: []config.Connection{{ID: "c", AutoRemediation: config.AutoRemediation{Enabled: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.lastDay(ctx, "c", now)
	if err != nil {
		t.Fatal(err)
	}
	if d.automatic != 1 || d.didNotHelp != "op-001" {
		t.Errorf("last day: %+v, want 1 automatic and op-001 not helping", d)
	}
	// A success after the failure: re-registration helped after all.
	add(store.Operation{State: store.StateSucceeded, CreateTime: now.Add(-time.Minute), EndTime: now.Add(-time.Minute)})
	if d, _ := r.lastDay(ctx, "c", now); d.didNotHelp != "" {
		t.Errorf("after a success: %+v", d)
	}
}
