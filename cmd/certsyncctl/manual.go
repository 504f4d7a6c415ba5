package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

// Commands for connections whose SF registry is manual: a person performs
// the steps in SF's UI and tells certsync what they did and saw.

// confirmSteps maps what operators type to the steps a person confirms.
var confirmSteps = map[string]certsyncv1.StepKind{
	"delete":                       certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING,
	"delete_mapping":               certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING,
	"step_kind_delete_mapping":     certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING,
	"upload":                       certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE,
	"upload_certificate":           certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE,
	"step_kind_upload_certificate": certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE,
}

// parseConfirmStep accepts "delete", "upload" and the enum names, in any case.
func parseConfirmStep(arg string) (certsyncv1.StepKind, error) {
	if k, ok := confirmSteps[strings.ToLower(strings.TrimSpace(arg))]; ok {
		return k, nil
	}
	return 0, fmt.Errorf("STEP must be delete or upload (or STEP_KIND_DELETE_MAPPING, STEP_KIND_UPLOAD_CERTIFICATE), not %q", arg)
}

func confirmCommand() *command {
	var note, fingerprint string
	return &command{
		name: "confirm", args: "OPERATION STEP",
		summary: "confirm a manual step done in SF's UI (STEP: delete or upload; --fingerprint what SF shows after the upload)",
		minArgs: 2, maxArgs: 2,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&note, "note", "", "what you saw or did (kept in the audit)")
			fs.StringVar(&fingerprint, "fingerprint", "", "upload: the fingerprint SF shows for the new mapping (SHA-1 or SHA-256); refused if not the uploaded certificate's")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			step, err := parseConfirmStep(args[1])
			if err != nil {
				return a.fail("confirm: %v", err)
			}
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.ConfirmOperationStep(ctx, &certsyncv1.ConfirmOperationStepRequest{
				Name: operationName(args[0]), Step: step, Note: note, Fingerprint: strings.TrimSpace(fingerprint),
			})
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.printOperation(resp.GetOperation())
		},
	}
}

func recordMappingCommand() *command {
	var fingerprint, certFile, configurationName, integrationName, loginName, note string
	return &command{
		name: "record-mapping", args: "CONNECTION",
		summary: "record the mapping SF's Security Center shows (manual registry): --fingerprint FP or --certificate FILE|-",
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&fingerprint, "fingerprint", "", "the fingerprint SF shows, SHA-1 or SHA-256")
			fs.StringVar(&certFile, "certificate", "", "or the mapped certificate, PEM or DER (- for standard input)")
			fs.StringVar(&configurationName, "configuration-name", "", "SF's Configuration Name")
			fs.StringVar(&integrationName, "integration-name", "", "SF's Integration Name")
			fs.StringVar(&loginName, "login-name", "", "SF's Login Name (empty: SF's built-in technical user)")
			fs.StringVar(&note, "note", "", "what else you saw (kept in the audit)")
		},
		run: func(ctx context.Context, a *app, c certsyncv1.CertSyncServiceClient, args []string) int {
			fingerprint = strings.TrimSpace(fingerprint)
			switch {
			case fingerprint == "" && certFile == "":
				return a.fail("record-mapping: give the fingerprint SF shows (--fingerprint FP) or the certificate (--certificate FILE)")
			case fingerprint != "" && certFile != "":
				return a.fail("record-mapping: give --fingerprint or --certificate, not both")
			}
			req := &certsyncv1.RecordTargetMappingRequest{
				Name: connectionName(args[0]), ConfigurationName: configurationName, IntegrationName: integrationName,
				LoginName: loginName, Fingerprint: fingerprint, Note: note,
			}
			if certFile != "" {
				data, err := a.readInput([]string{certFile}, maxInputBytes)
				if err != nil {
					return a.fail("%v", err)
				}
				if len(data) == 0 {
					return a.fail("record-mapping: %s is empty", certFile)
				}
				req.Certificate = data
			}
			ctx, cancel := a.callCtx(ctx)
			defer cancel()
			resp, err := c.RecordTargetMapping(ctx, req)
			if err != nil {
				return a.rpcFailed(err)
			}
			return a.print(resp, func(w io.Writer) { writeRecordedMapping(w, req.GetName(), resp.GetMapping()) })
		},
	}
}

func writeRecordedMapping(w io.Writer, conn string, m *certsyncv1.TargetMapping) {
	fmt.Fprintf(w, "%s: recorded mapping %s\n", conn, m.GetId())
	row := func(k, v string) { fmt.Fprintf(w, "  %-14s %s\n", k+":", v) }
	if m.GetConfigurationName() != "" {
		row("Configuration", m.GetConfigurationName())
	}
	if m.GetIntegrationName() != "" {
		row("Integration", m.GetIntegrationName())
	}
	login := m.GetLoginName()
	if login == "" {
		login = "(empty: SF's built-in technical user)"
	}
	row("Login name", login)
	if s := m.GetCertificate(); s.GetSubject() != "" {
		writeSummary(w, s, "  ")
	} else {
		if s.GetSha256Fingerprint() != "" {
			row("SHA-256", s.GetSha256Fingerprint())
		}
		if s.GetSha1Fingerprint() != "" {
			row("SHA-1", s.GetSha1Fingerprint())
		}
	}
	row("Matches IPS", yesNo(m.GetMatchesSource()))
	row("Source", strings.TrimPrefix(m.GetSource().String(), "EVIDENCE_SOURCE_"))
}

// uploadCertificate returns the step awaiting confirmation whose instruction
// carries the certificate to upload.
func uploadCertificate(op *certsyncv1.Operation) *certsyncv1.OperationStep {
	for _, s := range op.GetSteps() {
		if s.GetState() == certsyncv1.StepState_STEP_STATE_AWAITING_CONFIRMATION && s.GetInstruction().GetCertificatePem() != "" {
			return s
		}
	}
	return nil
}

// writeCertificate saves the certificate a person must upload in SF's UI to
// path; it refuses to replace an existing file unless force.
func (a *app) writeCertificate(op *certsyncv1.Operation, path string, force bool) error {
	step := uploadCertificate(op)
	if step == nil {
		return fmt.Errorf("%s has no step awaiting confirmation with a certificate to upload (operation %s); nothing written to %s",
			op.GetName(), strings.TrimPrefix(op.GetState().String(), "OPERATION_STATE_"), path)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: not overwritten (--force replaces it)", path)
	}
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, step.GetInstruction().GetCertificatePem())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	msg := fmt.Sprintf("certsyncctl: wrote the certificate to upload (%s", strings.TrimPrefix(step.GetKind().String(), "STEP_KIND_"))
	if fp := step.GetInstruction().GetSha256Fingerprint(); fp != "" {
		msg += ", SHA-256 " + fp
	}
	fmt.Fprintf(a.stderr, "%s) to %s\n", msg, path)
	return nil
}
