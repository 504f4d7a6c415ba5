package store

import (
	"testing"
	"time"
)

// TestHashEventGolden pins the hash encoding: a change here breaks every
// chain already stored.
func TestHashEventGolden(t *testing.T) {
	ev := &AuditEvent{
		Sequence: 42, Time: time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600)),
		Identity: "alice", Role: "operator", RPC: "ReregisterCertificate", Connection: "demo-desync",
		RequestID: "r1", Reason: "CHG-1", Outcome: "OK", Operation: "operations/op-1",
		PreviousHash: "00ff", Hash: "ignored",
	}
	// Computed independently of this package (length-prefixed fields, see HashEvent).
	const want = "065b88dac45c8a96c61cab710dbad93b8021be68f3d97fe9bb36d8ba60430a6d"
	if got := HashEvent(ev); got != want {
		t.Errorf("HashEvent = %s, want %s", got, want)
	}
}

func TestHashEventCoversEveryField(t *testing.T) {
	base := AuditEvent{Sequence: 1, Time: time.Unix(100, 5), Identity: "i", Role: "r", RPC: "p", Connection: "c",
		RequestID: "q", Reason: "why", Outcome: "o", Operation: "op", PreviousHash: "h"}
	h0 := HashEvent(&base)
	same := base
	same.Hash = "anything"
	same.Time = base.Time.In(time.FixedZone("Y", -7200))
	if HashEvent(&same) != h0 {
		t.Error("the hash depends on Hash or on the time zone")
	}
	for name, change := range map[string]func(e *AuditEvent){
		"Sequence":     func(e *AuditEvent) { e.Sequence = 2 },
		"Time":         func(e *AuditEvent) { e.Time = e.Time.Add(time.Nanosecond) },
		"Identity":     func(e *AuditEvent) { e.Identity = "j" },
		"Role":         func(e *AuditEvent) { e.Role = "s" },
		"RPC":          func(e *AuditEvent) { e.RPC = "x" },
		"Connection":   func(e *AuditEvent) { e.Connection = "d" },
		"RequestID":    func(e *AuditEvent) { e.RequestID = "z" },
		"Reason":       func(e *AuditEvent) { e.Reason = "how" },
		"Outcome":      func(e *AuditEvent) { e.Outcome = "p" },
		"Operation":    func(e *AuditEvent) { e.Operation = "oq" },
		"PreviousHash": func(e *AuditEvent) { e.PreviousHash = "g" },
		// Moving text between neighbouring fields must change the hash.
		"boundary": func(e *AuditEvent) { e.Identity, e.Role = "ir", "" },
	} {
		e := base
		change(&e)
		if HashEvent(&e) == h0 {
			t.Errorf("changing %s leaves the hash alone", name)
		}
	}
}
