package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
	"github.com/certsync/certsync/service/ips"
	"github.com/certsync/certsync/service/ipsjobs"
	"github.com/certsync/certsync/service/x509cert"
)

// lastJobs remembers each connection's latest job started here, for the
// escalation bundle's job-log lines.
type lastJobs struct {
	mu sync.Mutex
	m  map[string]string
}

func (l *lastJobs) set(conn, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]string{}
	}
	l.m[conn] = id
}

// tracker records jobs in the store; nil without one.
func (s *Server) tracker() *ipsjobs.Tracker {
	if s.st == nil {
		return nil
	}
	return &ipsjobs.Tracker{Store: s.st, Now: s.now, Log: s.log}
}

// latestJob is the connection's latest job started through certsync: from
// the store (any replica's), else from this process's memory.
func (s *Server) latestJob(ctx context.Context, conn string) string {
	if s.st != nil {
		if recs, err := s.st.LatestJobs(ctx, conn, 1); err == nil && len(recs) > 0 {
			return recs[0].JobID
		}
	}
	return s.jobs.get(conn)
}

func (l *lastJobs) get(conn string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[conn]
}

func ipsClient(c *inventory.Connection) (*ips.Client, error) {
	if c.IPS == nil {
		return nil, fault.New(fault.FailedPrecondition, "IPS_API_NOT_CONFIGURED",
			"%s has no IPS Tenant Admin API configured (ips.base_url and its credentials)", c.Name()).With("connection", c.Name())
	}
	return c.IPS, nil
}

// ipsFault explains a failed IPS call: who to check for refusals, when to
// retry for transient failures, and "look before starting another" when a
// job may have started.
func ipsFault(c *inventory.Connection, err error) error {
	var e *ips.Error
	if !errors.As(err, &e) {
		return err
	}
	var fe *fault.Error
	switch {
	case e.MayHaveStarted:
		fe = fault.New(fault.Unavailable, "IPS_JOB_OUTCOME_UNKNOWN", "IPS may have started the job (%s); look for it in IPS before starting another", e.Message)
	case e.Status == 401 || e.Status == 403:
		fe = fault.New(fault.FailedPrecondition, "IPS_REFUSED_CREDENTIALS", "IPS refused certsync's credentials: %s", e.Message)
	case e.Transient:
		fe = fault.New(fault.Unavailable, "IPS_UNAVAILABLE", "IPS could not be reached or asked to wait: %s", e.Message)
		fe.RetryAfter = max(e.RetryAfter, 5*time.Second)
	default:
		fe = fault.New(fault.FailedPrecondition, "IPS_REFUSED", "IPS refused the call: %s", e.Message)
	}
	fe.Cause = err
	return fe.With("connection", c.Name()).With("step", string(e.Step))
}

var jobTypes = map[certsyncv1.ProvisioningJobType]string{
	certsyncv1.ProvisioningJobType_PROVISIONING_JOB_TYPE_UNSPECIFIED: "READ",
	certsyncv1.ProvisioningJobType_PROVISIONING_JOB_TYPE_READ:        "READ",
	certsyncv1.ProvisioningJobType_PROVISIONING_JOB_TYPE_RESYNC:      "RESYNC",
}

// StartProvisioningJob implements certsync.v1.CertSyncService: refused
// while the gate does not allow, unless forced with a reason, which the
// audit keeps.
func (s *Server) StartProvisioningJob(ctx context.Context, req *certsyncv1.StartProvisioningJobRequest) (*certsyncv1.StartProvisioningJobResponse, error) {
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	client, err := ipsClient(c)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	jobType, ok := jobTypes[req.GetType()]
	if !ok {
		return nil, toStatus(ctx, s.log, fault.Invalid("type", "UNKNOWN_JOB_TYPE", "type %d is not a job type: READ or RESYNC", req.GetType()))
	}
	if req.GetForce() && strings.TrimSpace(req.GetReason()) == "" {
		return nil, toStatus(ctx, s.log, fault.Invalid("reason", "REASON_REQUIRED", "force needs a reason, which the audit keeps"))
	}
	decision := certsyncv1.GateDecision_GATE_DECISION_UNSPECIFIED
	if s.gate != nil {
		v, err := s.gate.Check(ctx, c.Config.ID, gate.UseDefaultAge)
		if err != nil {
			return nil, toStatus(ctx, s.log, err)
		}
		decision = decisionProto[v.Decision]
		if v.Decision != gate.Allow && !req.GetForce() {
			e := fault.New(fault.FailedPrecondition, "GATE_NOT_ALLOWING", "the gate says %s for %s: %s (force with a reason to start anyway)", v.Decision, c.Name(), v.Summary).
				With("connection", c.Name()).With("decision", v.Decision.String())
			e.Violations = []fault.Violation{{Type: "GATE", Subject: c.Name(), Description: v.Summary}}
			e.RetryAfter = v.RetryAfter
			return nil, toStatus(ctx, s.log, e)
		}
	}
	job, err := client.StartJob(ctx, c.Config.IPS.SourceSystemID, jobType)
	if err != nil {
		return nil, toStatus(ctx, s.log, ipsFault(c, err))
	}
	s.jobs.set(c.Config.ID, job.ID)
	if t := s.tracker(); t != nil {
		by := callerIdentity(ctx).Name
		if req.GetForce() {
			by += " (forced: " + req.GetReason() + ")"
		}
		sha := ""
		if c.Source != nil {
			if cert, err := c.Source.Active(ctx); err == nil && cert != nil {
				sha = x509cert.Summarize(cert).SHA256
			}
		}
		t.Started(ctx, c.Config.ID, job, jobType, by, "", sha)
	}
	return &certsyncv1.StartProvisioningJobResponse{
		Job:          &certsyncv1.ProvisioningJob{JobId: job.ID, Connection: c.Name(), Type: req.GetType(), Status: job.Status, StartTime: timestamppb.New(s.now())},
		GateDecision: decision,
	}, nil
}

// GetProvisioningJob implements certsync.v1.CertSyncService: the job's
// status and, when it failed, its log diagnosed.
func (s *Server) GetProvisioningJob(ctx context.Context, req *certsyncv1.GetProvisioningJobRequest) (*certsyncv1.GetProvisioningJobResponse, error) {
	c, err := s.lookup(req.GetName())
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	client, err := ipsClient(c)
	if err != nil {
		return nil, toStatus(ctx, s.log, err)
	}
	job, err := client.JobStatus(ctx, req.GetJobId())
	unsupported := errors.Is(err, ips.ErrStatusUnsupported)
	if err != nil && !unsupported {
		return nil, toStatus(ctx, s.log, ipsFault(c, err))
	}
	out := &certsyncv1.ProvisioningJob{JobId: req.GetJobId(), Connection: c.Name(), Status: job.Status}
	var logs ipsjobs.LogSource // the log, once exported
	if unsupported || job.HasErrors() {
		text, err := client.JobLogText(ctx, req.GetJobId())
		if err != nil {
			return nil, toStatus(ctx, s.log, ipsFault(c, err))
		}
		res, err := ipsjobs.DiagnoseLog(text)
		if err != nil {
			return nil, toStatus(ctx, s.log, err)
		}
		for _, f := range res.Findings {
			out.Findings = append(out.Findings, findingProto(f))
		}
		logs = ipsjobs.FetchedLog(text)
	}
	if t := s.tracker(); t != nil && !unsupported {
		// Keep what IPS said: the gate reads READ jobs as evidence.
		if rec, gerr := s.st.GetJob(ctx, c.Config.ID, req.GetJobId()); gerr == nil {
			t.Judge(ctx, logs, rec, job)
		}
	}
	return &certsyncv1.GetProvisioningJobResponse{Job: out}, nil
}
