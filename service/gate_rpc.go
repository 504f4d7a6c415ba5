package service

import (
	"context"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
)

// errGateDisabled answers gate calls on a server built without a gate.
var errGateDisabled = fault.New(fault.Unimplemented, "GATE_DISABLED", "this server does not run the pre-job gate")

// CheckGate implements certsync.v1.CertSyncService.
func (s *Server) CheckGate(ctx context.Context, req *certsyncv1.CheckGateRequest) (*certsyncv1.CheckGateResponse, error) {
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	if s.gate == nil {
		return nil, toStatus(ctx, s.log, errGateDisabled)
	}
	// An absent max_evidence_age means the default; an explicit 0 means
	// "only evidence gathered for this call".
	maxAge := gate.UseDefaultAge
	if d := req.GetMaxEvidenceAge(); d != nil {
		maxAge = d.AsDuration()
	}
	v, err := s.gate.Check(ctx, c.Config.ID, maxAge)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	if s.metrics != nil {
		s.metrics.GateAnswer(c.Config.ID, v.Decision.String())
	}
	// The answer goes on the call's own log line (one line per call, on the
	// path of every provisioning job). job_id was validated (bounded,
	// printable), so it may be logged: it is how a scheduler's run is found
	// in the server's log.
	logging.AddFields(ctx, logging.Fields{"connection", c.Name(), "job_id", req.GetJobId(),
		"decision", v.Decision.String(), "evidence_age_ms", v.EvidenceAge.Milliseconds()})
	return &certsyncv1.CheckGateResponse{
		Decision:    decisionProto[v.Decision],
		Conditions:  conditionsProto(view(v.Conditions, req.GetView())),
		CheckedAt:   timestampOrNil(v.CheckedAt),
		EvidenceAge: durationpb.New(v.EvidenceAge),
		RetryAfter:  durationOrNil(v.RetryAfter),
		Remediation: stepsProto(v.Remediation),
		Connection:  c.Name(),
		Summary:     v.Summary,
	}, nil
}

// WatchGate implements certsync.v1.CertSyncService. It sends the current
// verdict, then each change, until the client leaves or the gate closes. The
// gate keeps at most one unsent verdict per watcher (the latest), so a slow
// client delays only itself.
func (s *Server) WatchGate(req *certsyncv1.WatchGateRequest, stream grpc.ServerStreamingServer[certsyncv1.WatchGateResponse]) error {
	ctx := stream.Context()
	c, err := s.lookup(req.GetName())
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	if s.gate == nil {
		return toStatus(ctx, s.log, errGateDisabled)
	}
	ch, cancel, err := s.gate.Subscribe(c.Config.ID)
	if err != nil {
		return toStatus(ctx, s.log, err)
	}
	defer cancel()
	var last gate.Verdict
	sent := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case v, ok := <-ch:
			if !ok {
				return toStatus(ctx, s.log, gate.ErrClosed)
			}
			v.Conditions = view(v.Conditions, req.GetView())
			// A change only in conditions this view leaves out is no change
			// to this watcher.
			if sent && v.SameAs(last) {
				continue
			}
			last, sent = v, true
			if err := stream.Send(watchGateProto(c, v)); err != nil {
				// The client is gone; its status is the transport's.
				return err
			}
		}
	}
}

// view keeps the conditions a GateView asks for: BASIC (the default) leaves
// out the checks that hold with severity INFO, so that a plain ALLOW is a
// small answer on the path of every provisioning job.
func view(cs []gate.Condition, v certsyncv1.GateView) []gate.Condition {
	if v == certsyncv1.GateView_GATE_VIEW_FULL {
		return cs
	}
	out := make([]gate.Condition, 0, len(cs))
	for _, c := range cs {
		if c.Status != gate.True || c.Severity != gate.Info {
			out = append(out, c)
		}
	}
	return out
}

func watchGateProto(c *inventory.Connection, v gate.Verdict) *certsyncv1.WatchGateResponse {
	return &certsyncv1.WatchGateResponse{
		Decision:    decisionProto[v.Decision],
		Conditions:  conditionsProto(v.Conditions),
		CheckedAt:   timestampOrNil(v.CheckedAt),
		EvidenceAge: durationpb.New(v.EvidenceAge),
		RetryAfter:  durationOrNil(v.RetryAfter),
		Remediation: stepsProto(v.Remediation),
		Connection:  c.Name(),
		Summary:     v.Summary,
	}
}

// verdictSummaryProto is the short form shown with a connection
// (Connection.latest_verdict), from gate.Latest, which never probes.
func verdictSummaryProto(v gate.Verdict) *certsyncv1.VerdictSummary {
	return &certsyncv1.VerdictSummary{
		Decision:  decisionProto[v.Decision],
		CheckedAt: timestampOrNil(v.CheckedAt),
		Reasons:   v.Reasons(),
	}
}

var decisionProto = map[gate.Decision]certsyncv1.GateDecision{
	gate.DecisionUnspecified: certsyncv1.GateDecision_GATE_DECISION_UNSPECIFIED,
	gate.Allow:               certsyncv1.GateDecision_GATE_DECISION_ALLOW,
	gate.Deny:                certsyncv1.GateDecision_GATE_DECISION_DENY,
	gate.Inconclusive:        certsyncv1.GateDecision_GATE_DECISION_INCONCLUSIVE,
}

var conditionStatusProto = map[gate.Status]certsyncv1.ConditionStatus{
	gate.StatusUnspecified: certsyncv1.ConditionStatus_CONDITION_STATUS_UNSPECIFIED,
	gate.True:              certsyncv1.ConditionStatus_CONDITION_STATUS_TRUE,
	gate.False:             certsyncv1.ConditionStatus_CONDITION_STATUS_FALSE,
	gate.Unknown:           certsyncv1.ConditionStatus_CONDITION_STATUS_UNKNOWN,
}

var gateSeverityProto = map[gate.Severity]certsyncv1.Severity{
	gate.SeverityUnspecified: certsyncv1.Severity_SEVERITY_UNSPECIFIED,
	gate.Info:                certsyncv1.Severity_SEVERITY_INFO,
	gate.Warning:             certsyncv1.Severity_SEVERITY_WARNING,
	gate.Error:               certsyncv1.Severity_SEVERITY_ERROR,
}

var evidenceSourceProto = map[gate.EvidenceSource]certsyncv1.EvidenceSource{
	gate.FromUnspecified:       certsyncv1.EvidenceSource_EVIDENCE_SOURCE_UNSPECIFIED,
	gate.FromConfiguration:     certsyncv1.EvidenceSource_EVIDENCE_SOURCE_CONFIGURATION,
	gate.FromSourceCertificate: certsyncv1.EvidenceSource_EVIDENCE_SOURCE_SOURCE_CERTIFICATE,
	gate.FromRegistry:          certsyncv1.EvidenceSource_EVIDENCE_SOURCE_REGISTRY,
	gate.FromProbe:             certsyncv1.EvidenceSource_EVIDENCE_SOURCE_PROBE,
	gate.FromIPSJob:            certsyncv1.EvidenceSource_EVIDENCE_SOURCE_IPS_JOB,
	gate.FromPerson:            certsyncv1.EvidenceSource_EVIDENCE_SOURCE_PERSON,
	gate.FromOperation:         certsyncv1.EvidenceSource_EVIDENCE_SOURCE_OPERATION,
}

func conditionsProto(cs []gate.Condition) []*certsyncv1.Condition {
	out := make([]*certsyncv1.Condition, 0, len(cs))
	for _, c := range cs {
		out = append(out, &certsyncv1.Condition{
			Type:         c.Type,
			Status:       conditionStatusProto[c.Status],
			Severity:     gateSeverityProto[c.Severity],
			Reason:       c.Reason,
			Message:      c.Message,
			ObservedTime: timestampOrNil(c.ObservedTime),
			Source:       evidenceSourceProto[c.Source],
		})
	}
	return out
}

// timestampOrNil leaves a time that is not known unset rather than sending
// the year 1.
func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// durationOrNil leaves retry_after unset when asking again does not help.
func durationOrNil(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}
