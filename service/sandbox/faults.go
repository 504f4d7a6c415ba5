package sandbox

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Operations a fault can target. The first four are counted per connection.
const (
	OperationSCIM        = "scim"
	OperationList        = "list"
	OperationDelete      = "delete"
	OperationUpload      = "upload"
	OperationIPSToken    = "ips_token"
	OperationIPSStartJob = "ips_start_job"
	OperationIPSJobLog   = "ips_job_log"
)

var operations = []string{
	OperationSCIM, OperationList, OperationDelete, OperationUpload,
	OperationIPSToken, OperationIPSStartJob, OperationIPSJobLog,
}

// Fault makes the next Times calls (default 1) of Operation on Connection
// wait Delay, then reset the TCP connection (Reset wins) or answer Status
// (400..599) with a short JSON error; with neither they proceed normally
// after the delay.
type Fault struct {
	Connection string
	Operation  string
	Delay      time.Duration
	Status     int
	Reset      bool
	Times      int
}

// FieldError is a refused Fault; Field is the JSON field at fault.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

type pendingFault struct {
	Fault
	remaining int
}

// InjectFault queues f behind any fault already pending for the same
// connection and operation.
func (s *Sandbox) InjectFault(f Fault) error {
	if f.Times == 0 {
		f.Times = 1
	}
	known := false
	for _, op := range operations {
		known = known || op == f.Operation
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case f.Connection == "":
		return &FieldError{"connection", "required"}
	case s.conns[f.Connection] == nil:
		return &FieldError{"connection", fmt.Sprintf("unknown connection %q", f.Connection)}
	case f.Operation == "":
		return &FieldError{"operation", "required: one of " + strings.Join(operations, ", ")}
	case !known:
		return &FieldError{"operation", fmt.Sprintf("%q is not one of %s", f.Operation, strings.Join(operations, ", "))}
	case f.Delay < 0:
		return &FieldError{"delay", "must not be negative"}
	case f.Status != 0 && (f.Status < 400 || f.Status > 599):
		return &FieldError{"status", fmt.Sprintf("%d is outside 400..599", f.Status)}
	case f.Times < 0:
		return &FieldError{"times", "must not be negative"}
	}
	s.faults = append(s.faults, &pendingFault{Fault: f, remaining: f.Times})
	s.log.Info("sandbox fault injected", "connection", f.Connection, "operation", f.Operation,
		"delay", f.Delay, "status", f.Status, "reset", f.Reset, "times", f.Times)
	return nil
}

// ClearFaults drops every pending fault.
func (s *Sandbox) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// countLocked counts one call of op on c (if any) and takes the first
// pending fault for it. Faulted calls are counted too: tests assert how often
// production code called, retries included.
func (s *Sandbox) countLocked(c *connection, op string) *Fault {
	if c == nil {
		return nil
	}
	c.counters.add(op)
	for i, pf := range s.faults {
		if pf.Connection != c.id || pf.Operation != op {
			continue
		}
		pf.remaining--
		if pf.remaining <= 0 {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
		}
		f := pf.Fault
		return &f
	}
	return nil
}

// count is countLocked under the lock.
func (s *Sandbox) count(c *connection, op string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.countLocked(c, op)
}

// applyFault carries out f, without holding the lock. It reports whether the
// handler should go on to answer normally.
func (s *Sandbox) applyFault(w http.ResponseWriter, r *http.Request, f *Fault) bool {
	if f == nil {
		return true
	}
	s.log.Info("sandbox fault applied", "connection", f.Connection, "operation", f.Operation,
		"delay", f.Delay, "status", f.Status, "reset", f.Reset)
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			// The client gave up (its timeout worked); nobody reads an answer.
			panic(http.ErrAbortHandler)
		case <-s.quit:
			// Closing: end the exchange without an answer rather than
			// holding Close for the rest of the delay.
			panic(http.ErrAbortHandler)
		}
	}
	if f.Reset {
		resetConnection(w)
		return false
	}
	if f.Status != 0 {
		if f.Status == http.StatusTooManyRequests || f.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, f.Status, "SANDBOX_FAULT", "", fmt.Sprintf("injected fault: %s answered %d", f.Operation, f.Status))
		return false
	}
	return true
}

// resetConnection drops the client's TCP connection with an RST (SO_LINGER
// 0), what a crashing load balancer does: the client sees "connection reset
// by peer" rather than a clean close.
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	raw := conn
	// Close the TCP connection under TLS directly: closing the tls.Conn
	// would first send a close_notify alert, a clean shutdown.
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tcp, ok := raw.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = raw.Close()
}

// faultJSON is the wire shape of a fault in the control API.
type faultJSON struct {
	Connection string `json:"connection"`
	Operation  string `json:"operation"`
	Delay      string `json:"delay,omitempty"`
	Status     int    `json:"status,omitempty"`
	Reset      bool   `json:"reset"`
	Times      int    `json:"times"`
}

func toFaultJSON(f Fault, times int) faultJSON {
	j := faultJSON{Connection: f.Connection, Operation: f.Operation, Status: f.Status, Reset: f.Reset, Times: times}
	if f.Delay > 0 {
		j.Delay = f.Delay.String()
	}
	return j
}

func (s *Sandbox) handleInjectFault(w http.ResponseWriter, r *http.Request) {
	var j faultJSON
	if !decodeJSON(w, r, &j) {
		return
	}
	f := Fault{Connection: j.Connection, Operation: j.Operation, Status: j.Status, Reset: j.Reset, Times: j.Times}
	if j.Delay != "" {
		d, err := time.ParseDuration(j.Delay)
		if err != nil {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "delay", fmt.Sprintf("delay: %q is not a duration (use e.g. 500ms, 5s)", j.Delay))
			return
		}
		f.Delay = d
	}
	if err := s.InjectFault(f); err != nil {
		fe, _ := err.(*FieldError)
		field := ""
		if fe != nil {
			field = fe.Field
		}
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", field, err.Error())
		return
	}
	if f.Times == 0 {
		f.Times = 1
	}
	writeJSON(w, http.StatusCreated, toFaultJSON(f, f.Times))
}

func (s *Sandbox) handleListFaults(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	list := make([]faultJSON, 0, len(s.faults))
	for _, pf := range s.faults {
		list = append(list, toFaultJSON(pf.Fault, pf.remaining))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string][]faultJSON{"faults": list})
}

func (s *Sandbox) handleClearFaults(w http.ResponseWriter, _ *http.Request) {
	s.ClearFaults()
	s.log.Info("sandbox faults cleared")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sandbox) handleState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.State())
}
