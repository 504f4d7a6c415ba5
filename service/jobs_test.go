package service_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	"github.com/certsync/certsync/service/gate"
	"github.com/certsync/certsync/service/inventory"
)

func TestProvisioningJobs(t *testing.T) {
	h := newGateHarness(t, inventory.Options{ProbeTimeout: 5 * time.Second}, gate.Options{})

	// The gate denies demo-desync: no job, unless forced with a reason.
	_, err := h.client.StartProvisioningJob(ctx(t), &certsyncv1.StartProvisioningJobRequest{Name: "demo-desync"})
	if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "GATE_NOT_ALLOWING" {
		t.Fatalf("job while the gate denies: %v %s", code, reason)
	}
	_, err = h.client.StartProvisioningJob(ctx(t), &certsyncv1.StartProvisioningJobRequest{Name: "demo-desync", Force: true})
	if code, _, fields := errorInfo(t, err); code != codes.InvalidArgument || strings.Join(fields, ",") != "reason" {
		t.Fatalf("force without a reason: %v %v", code, fields)
	}
	forced, err := h.client.StartProvisioningJob(ctx(t), &certsyncv1.StartProvisioningJobRequest{Name: "demo-desync", Force: true, Reason: "INC-7: see the error for the ticket"})
	must(t, err)
	if forced.GetGateDecision() != certsyncv1.GateDecision_GATE_DECISION_DENY || forced.GetJob().GetJobId() == "" {
		t.Fatalf("forced job: %v", forced)
	}
	// The job's log is diagnosed: the seed's failure, at the sandbox's host.
	job, err := h.client.GetProvisioningJob(ctx(t), &certsyncv1.GetProvisioningJobRequest{Name: "demo-desync", JobId: forced.GetJob().GetJobId()})
	must(t, err)
	if job.GetJob().GetStatus() != "Finished with Error" || len(job.GetJob().GetFindings()) == 0 {
		t.Fatalf("job: %v", job.GetJob())
	}
	if f := job.GetJob().GetFindings()[0]; f.GetHttpStatus() != 401 || f.GetErrorCode() != "AUTH0032" || !f.GetScimUsersEndpoint() {
		t.Errorf("finding: %v", f)
	}
	// The escalation bundle carries the job's log lines.
	b, err := h.client.GetEscalationBundle(ctx(t), &certsyncv1.GetEscalationBundleRequest{Name: "demo-desync"})
	must(t, err)
	if len(b.GetBundle().GetJobLogLines()) == 0 || !strings.Contains(strings.Join(b.GetBundle().GetJobLogLines(), "\n"), "AUTH0032") || b.GetBundle().GetTenantId() == "" {
		t.Errorf("bundle job-log lines %q, tenant %q", b.GetBundle().GetJobLogLines(), b.GetBundle().GetTenantId())
	}

	// The gate allows demo-healthy: the job runs and succeeds.
	ok, err := h.client.StartProvisioningJob(ctx(t), &certsyncv1.StartProvisioningJobRequest{Name: "demo-healthy"})
	must(t, err)
	if ok.GetGateDecision() != certsyncv1.GateDecision_GATE_DECISION_ALLOW {
		t.Errorf("gate decision %v", ok.GetGateDecision())
	}
	job, err = h.client.GetProvisioningJob(ctx(t), &certsyncv1.GetProvisioningJobRequest{Name: "demo-healthy", JobId: ok.GetJob().GetJobId()})
	must(t, err)
	if job.GetJob().GetStatus() != "Success" || len(job.GetJob().GetFindings()) != 0 {
		t.Errorf("healthy job: %v", job.GetJob())
	}
	// IPS's rate limit (5 starts a minute per tenant in the sandbox) is an
	// UNAVAILABLE with a retry hint, not a failure of certsync.
	var last error
	for i := 0; i < 8 && last == nil; i++ {
		_, last = h.client.StartProvisioningJob(ctx(t), &certsyncv1.StartProvisioningJobRequest{Name: "demo-healthy"})
	}
	if st := status.Convert(last); st.Code() != codes.Unavailable {
		t.Errorf("past IPS's rate limit: %v %s", st.Code(), st.Message())
	}
}
