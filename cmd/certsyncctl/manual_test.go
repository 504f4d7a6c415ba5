package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
)

// fakeManual answers the manual-registry calls with canned data and keeps
// what it was asked.
type fakeManual struct {
	certsyncv1.UnimplementedCertSyncServiceServer

	mu       sync.Mutex
	ops      map[string]*certsyncv1.Operation // by name
	confirms []*certsyncv1.ConfirmOperationStepRequest
	records  []*certsyncv1.RecordTargetMappingRequest
}

func (f *fakeManual) GetOperation(_ context.Context, req *certsyncv1.GetOperationRequest) (*certsyncv1.GetOperationResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op, ok := f.ops[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s not found", req.GetName())
	}
	return &certsyncv1.GetOperationResponse{Operation: op}, nil
}

func (f *fakeManual) ConfirmOperationStep(_ context.Context, req *certsyncv1.ConfirmOperationStepRequest) (*certsyncv1.ConfirmOperationStepResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.confirms = append(f.confirms, proto.Clone(req).(*certsyncv1.ConfirmOperationStepRequest))
	op, ok := f.ops[req.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s not found", req.GetName())
	}
	if req.GetFingerprint() == "00:11" {
		return nil, status.Error(codes.InvalidArgument, "the fingerprint 00:11 is not the uploaded certificate's")
	}
	return &certsyncv1.ConfirmOperationStepResponse{Operation: op}, nil
}

func (f *fakeManual) RecordTargetMapping(_ context.Context, req *certsyncv1.RecordTargetMappingRequest) (*certsyncv1.RecordTargetMappingResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records = append(f.records, proto.Clone(req).(*certsyncv1.RecordTargetMappingRequest))
	sum := &certsyncv1.CertificateSummary{}
	if len(req.GetCertificate()) > 0 {
		block, _ := pem.Decode(req.GetCertificate())
		if block == nil {
			return nil, status.Error(codes.InvalidArgument, "certificate: not PEM")
		}
		s256, s1 := sha256.Sum256(block.Bytes), sha1.Sum(block.Bytes)
		sum.Sha256Fingerprint, sum.Sha1Fingerprint = hexPairs(s256[:]), hexPairs(s1[:])
	} else {
		sum.Sha1Fingerprint = strings.ToUpper(req.GetFingerprint())
	}
	return &certsyncv1.RecordTargetMappingResponse{Mapping: &certsyncv1.TargetMapping{
		Id: "rec-1", ConfigurationName: req.GetConfigurationName(), IntegrationName: req.GetIntegrationName(), LoginName: req.GetLoginName(),
		Certificate: sum, MatchesSource: len(req.GetCertificate()) > 0, Source: certsyncv1.EvidenceSource_EVIDENCE_SOURCE_PERSON,
	}}, nil
}

func (f *fakeManual) lastConfirm() *certsyncv1.ConfirmOperationStepRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.confirms) == 0 {
		return nil
	}
	return f.confirms[len(f.confirms)-1]
}

func (f *fakeManual) lastRecord() *certsyncv1.RecordTargetMappingRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.records) == 0 {
		return nil
	}
	return f.records[len(f.records)-1]
}

func (f *fakeManual) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.confirms) + len(f.records)
}

func startFakeManual(t *testing.T, ops ...*certsyncv1.Operation) (*fakeManual, string) {
	t.Helper()
	f := &fakeManual{ops: map[string]*certsyncv1.Operation{}}
	for _, op := range ops {
		f.ops[op.GetName()] = op
	}
	return f, serveFake(t, f)
}

// serveFake serves a fake CertSyncService on a loopback port until the test
// ends and returns its address.
func serveFake(t *testing.T, srv certsyncv1.CertSyncServiceServer) string {
	t.Helper()
	g := grpc.NewServer()
	certsyncv1.RegisterCertSyncServiceServer(g, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// testCertPEM makes a self-signed client certificate at test time.
func testCertPEM(t *testing.T) ([]byte, [32]byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "ips-outbound"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), sha256.Sum256(der)
}

const uploadText = "In SuccessFactors, open Admin Center > Security Center > X.509 Public Certificate Mapping.\n" +
	"1. Choose Add, and upload the certificate attached to this step (certificate_pem; certsyncctl operation op-1 --write-certificate FILE saves it).\n" +
	"2. Enter Configuration Name \"IPS\", Integration Name \"Identity Provisioning Service\" and Login Name \"\" (empty: SF's built-in technical user), exactly as written, and save.\n" +
	"4. Confirm this step (certsyncctl confirm op-1 upload --fingerprint FINGERPRINT-SF-SHOWS)."

// manualOps are an operation waiting for the upload and one that is done.
func manualOps(t *testing.T) (waiting, done *certsyncv1.Operation, certPEM []byte) {
	certPEM, sum := testCertPEM(t)
	waiting = &certsyncv1.Operation{
		Name: "operations/op-1", Connection: "connections/ips", State: certsyncv1.OperationState_OPERATION_STATE_RUNNING,
		Summary: "waiting for a person to upload the certificate in SF",
		Steps: []*certsyncv1.OperationStep{
			{Kind: certsyncv1.StepKind_STEP_KIND_BACKUP_MAPPING, State: certsyncv1.StepState_STEP_STATE_SUCCEEDED, Message: "backed up"},
			{Kind: certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING, State: certsyncv1.StepState_STEP_STATE_SUCCEEDED, Message: "confirmed", ConfirmedBy: "alice",
				Instruction: &certsyncv1.ManualInstruction{Text: "DELETE-INSTRUCTION-NOT-SHOWN"}},
			{Kind: certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE, State: certsyncv1.StepState_STEP_STATE_AWAITING_CONFIRMATION, Message: "upload in SF's UI",
				Deadline: timestamppb.New(time.Now().Add(4 * time.Hour)),
				Instruction: &certsyncv1.ManualInstruction{Text: uploadText, CertificatePem: string(certPEM), ConfigurationName: "IPS",
					IntegrationName: "Identity Provisioning Service", Sha256Fingerprint: hexPairs(sum[:])}},
			{Kind: certsyncv1.StepKind_STEP_KIND_PROBE, State: certsyncv1.StepState_STEP_STATE_PENDING},
		},
	}
	done = &certsyncv1.Operation{
		Name: "operations/op-2", Connection: "connections/ips", State: certsyncv1.OperationState_OPERATION_STATE_SUCCEEDED, Done: true,
		Steps: []*certsyncv1.OperationStep{
			{Kind: certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE, State: certsyncv1.StepState_STEP_STATE_SUCCEEDED, ConfirmedBy: "bob",
				Instruction: &certsyncv1.ManualInstruction{Text: uploadText, CertificatePem: string(certPEM)}},
		},
	}
	return waiting, done, certPEM
}

// pemBody is the base64 of a PEM block, which text output must never show.
func pemBody(certPEM []byte) string {
	lines := strings.Split(strings.TrimSpace(string(certPEM)), "\n")
	return lines[1]
}

func TestOperationShowsManualInstructions(t *testing.T) {
	waiting, done, certPEM := manualOps(t)
	_, addr := startFakeManual(t, waiting, done)

	out, errOut, code := ctl(t, "", "operation", "op-1", "--addr", addr)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"      Instructions:\n",
		"Confirmed by:  alice",
		"Configuration: IPS",
		"Integration:   Identity Provisioning Service",
		"Login name:    (empty: SF's built-in technical user)",
		"SHA-256:       " + waiting.Steps[2].Instruction.Sha256Fingerprint,
		"Deadline:      " + waiting.Steps[2].Deadline.AsTime().UTC().Format(time.RFC3339),
		"--write-certificate FILE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(uploadText, "\n") {
		if !strings.Contains(out, "\n        "+line+"\n") {
			t.Errorf("instruction line %q not shown indented:\n%s", line, out)
		}
	}
	if strings.Contains(out, "BEGIN CERTIFICATE") || strings.Contains(out, pemBody(certPEM)) || strings.Contains(out, "DELETE-INSTRUCTION-NOT-SHOWN") {
		t.Errorf("text output shows the PEM or a finished step's instruction:\n%s", out)
	}
	// The instruction follows its own step, not another's.
	if i, j := strings.Index(out, "UPLOAD_CERTIFICATE"), strings.Index(out, "Instructions:"); i < 0 || j < i || j > strings.Index(out, "PROBE") {
		t.Errorf("instructions not under the upload step:\n%s", out)
	}

	// A done operation shows who confirmed, and no instructions.
	out, errOut, code = ctl(t, "", "operation", "operations/op-2", "--addr", addr)
	if code != 0 || !strings.Contains(out, "Confirmed by:  bob") || strings.Contains(out, "Instructions:") || strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("done operation: exit %d\n%s%s", code, out, errOut)
	}

	// JSON carries everything, the PEM included.
	out, errOut, code = ctl(t, "", "operation", "op-1", "-o", "json", "--addr", addr)
	var got struct {
		Name  string `json:"name"`
		Steps []struct {
			State       string `json:"state"`
			ConfirmedBy string `json:"confirmed_by"`
			Instruction struct {
				CertificatePEM string `json:"certificate_pem"`
			} `json:"instruction"`
		} `json:"steps"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Name != "operations/op-1" || len(got.Steps) != 4 ||
		got.Steps[2].State != "STEP_STATE_AWAITING_CONFIRMATION" || got.Steps[2].Instruction.CertificatePEM != string(certPEM) || got.Steps[1].ConfirmedBy != "alice" {
		t.Errorf("json: exit %d %+v\n%s%s", code, got, out, errOut)
	}
}

func TestOperationWriteCertificate(t *testing.T) {
	waiting, done, certPEM := manualOps(t)
	_, addr := startFakeManual(t, waiting, done)
	path := filepath.Join(t.TempDir(), "upload.crt")

	out, errOut, code := ctl(t, "", "operation", "op-1", "--write-certificate", path, "--addr", addr)
	if code != 0 || !strings.Contains(errOut, "wrote the certificate to upload") || !strings.Contains(errOut, path) ||
		!strings.Contains(errOut, waiting.Steps[2].Instruction.Sha256Fingerprint) || !strings.Contains(out, "Instructions:") || strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, certPEM) {
		t.Fatalf("file holds %q (%v), want the PEM", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&^0o644 != 0 || fi.Mode().Perm()&0o600 != 0o600 {
		t.Errorf("mode %v (%v), want 0644 less the umask", fi.Mode(), err)
	}

	// An existing file stays unless --force.
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = ctl(t, "", "operation", "op-1", "--write-certificate", path, "--addr", addr)
	if got, _ := os.ReadFile(path); code != 3 || out != "" || !strings.Contains(errOut, "exists") || !strings.Contains(errOut, "--force") || string(got) != "keep me" {
		t.Errorf("overwrite without --force: exit %d, file %q\n%s%s", code, got, out, errOut)
	}
	out, errOut, code = ctl(t, "", "operation", "op-1", "--write-certificate", path, "--force", "-o", "json", "--addr", addr)
	if got, _ := os.ReadFile(path); code != 0 || !bytes.Equal(got, certPEM) || !strings.HasPrefix(out, "{") {
		t.Errorf("overwrite with --force: exit %d, file %q\n%s%s", code, got, out, errOut)
	}

	// No step waits with a certificate: a clear refusal, nothing written.
	other := filepath.Join(t.TempDir(), "none.crt")
	out, errOut, code = ctl(t, "", "operation", "op-2", "--write-certificate", other, "--addr", addr)
	if _, err := os.Stat(other); code != 3 || out != "" || !strings.Contains(errOut, "no step awaiting confirmation with a certificate to upload") ||
		!strings.Contains(errOut, "SUCCEEDED") || err == nil {
		t.Errorf("done operation: exit %d, stat %v\n%s%s", code, err, out, errOut)
	}

	// --force alone is a usage error; an unknown operation is the server's.
	for _, args := range [][]string{
		{"operation", "op-1", "--force"},
		{"operation", "nope", "--write-certificate", other},
	} {
		_, errOut, code := ctl(t, "", append(args, "--addr", addr)...)
		if code != 3 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 3 with a message", args, code, errOut)
		}
	}
}

func TestConfirm(t *testing.T) {
	waiting, _, certPEM := manualOps(t)
	f, addr := startFakeManual(t, waiting)

	out, errOut, code := ctl(t, "", "confirm", "op-1", "upload", "--fingerprint", "ab:cd:ef", "--note", "SF shows it", "--addr", addr)
	req := f.lastConfirm()
	if code != 0 || req == nil || req.GetName() != "operations/op-1" || req.GetStep() != certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE ||
		req.GetFingerprint() != "ab:cd:ef" || req.GetNote() != "SF shows it" {
		t.Fatalf("exit %d, request %v\n%s%s", code, req, out, errOut)
	}
	if !strings.Contains(out, "Operation:   operations/op-1") || !strings.Contains(out, "Instructions:") || strings.Contains(out, "BEGIN CERTIFICATE") || strings.Contains(out, pemBody(certPEM)) {
		t.Errorf("output:\n%s", out)
	}

	for _, tc := range []struct {
		args []string
		want certsyncv1.StepKind
	}{
		{[]string{"operations/op-1", "delete"}, certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING},
		{[]string{"op-1", "DELETE"}, certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING},
		{[]string{"op-1", "STEP_KIND_DELETE_MAPPING"}, certsyncv1.StepKind_STEP_KIND_DELETE_MAPPING},
		{[]string{"op-1", "step_kind_upload_certificate"}, certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE},
		{[]string{"op-1", "Upload"}, certsyncv1.StepKind_STEP_KIND_UPLOAD_CERTIFICATE},
	} {
		out, errOut, code := ctl(t, "", append(append([]string{"confirm"}, tc.args...), "--addr", addr)...)
		req := f.lastConfirm()
		if code != 0 || req.GetName() != "operations/op-1" || req.GetStep() != tc.want || req.GetFingerprint() != "" || req.GetNote() != "" {
			t.Errorf("%v: exit %d, request %v\n%s%s", tc.args, code, req, out, errOut)
		}
	}

	out, errOut, code = ctl(t, "", "confirm", "op-1", "upload", "-o", "json", "--addr", addr)
	var got struct {
		Name string `json:"name"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Name != "operations/op-1" {
		t.Errorf("json: exit %d\n%s%s", code, out, errOut)
	}

	// A bad STEP is a usage error that names the accepted values, and
	// nothing reaches the server.
	before := f.calls()
	for _, step := range []string{"probe", "STEP_KIND_PROBE", "", "del"} {
		out, errOut, code := ctl(t, "", "confirm", "op-1", step, "--addr", addr)
		if code != 3 || out != "" || !strings.Contains(errOut, "delete or upload") || !strings.Contains(errOut, "STEP_KIND_UPLOAD_CERTIFICATE") {
			t.Errorf("step %q: exit %d\n%s%s", step, code, out, errOut)
		}
	}
	if f.calls() != before {
		t.Errorf("a bad STEP reached the server")
	}
	// Missing arguments, and the server's refusals, are no answer too.
	for _, args := range [][]string{
		{"confirm", "op-1"},
		{"confirm", "op-1", "upload", "extra"},
		{"confirm", "nope", "upload"},
		{"confirm", "op-1", "upload", "--fingerprint", "00:11"},
	} {
		_, errOut, code := ctl(t, "", append(args, "--addr", addr)...)
		if code != 3 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q; want 3 with a message", args, code, errOut)
		}
	}
	if _, errOut, _ := ctl(t, "", "confirm", "op-1", "upload", "--fingerprint", "00:11", "--addr", addr); !strings.Contains(errOut, "InvalidArgument") {
		t.Errorf("refusal reported as %q", errOut)
	}
}

func TestRecordMapping(t *testing.T) {
	f, addr := startFakeManual(t)
	certPEM, sum := testCertPEM(t)
	certFile := filepath.Join(t.TempDir(), "sf.crt")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := ctl(t, "", "record-mapping", "ips", "--fingerprint", " ab:cd:ef ", "--configuration-name", "IPS",
		"--integration-name", "Identity Provisioning Service", "--login-name", "sfadmin", "--note", "seen 10:02", "--addr", addr)
	req := f.lastRecord()
	if code != 0 || req == nil || req.GetName() != "connections/ips" || req.GetFingerprint() != "ab:cd:ef" || len(req.GetCertificate()) != 0 ||
		req.GetConfigurationName() != "IPS" || req.GetIntegrationName() != "Identity Provisioning Service" || req.GetLoginName() != "sfadmin" || req.GetNote() != "seen 10:02" {
		t.Fatalf("exit %d, request %v\n%s%s", code, req, out, errOut)
	}
	if !strings.HasPrefix(out, "connections/ips: recorded mapping rec-1\n") || !strings.Contains(out, "Integration:   Identity Provisioning Service\n") {
		t.Errorf("output:\n%s", out)
	}
	for _, kv := range [][2]string{{"Configuration:", "IPS"}, {"Login name:", "sfadmin"}, {"SHA-1:", "AB:CD:EF"}, {"Matches IPS:", "no"}, {"Source:", "PERSON"}} {
		if !hasRow(out, kv[0], kv[1]) {
			t.Errorf("output lacks %s %s:\n%s", kv[0], kv[1], out)
		}
	}
	if strings.Contains(out, "SHA-256:") {
		t.Errorf("output shows a SHA-256 nobody gave:\n%s", out)
	}

	// The certificate file, sent as it is; from a file and from stdin.
	for _, args := range [][]string{
		{"record-mapping", "connections/ips", "--certificate", certFile},
		{"record-mapping", "connections/ips", "--certificate", "-"},
	} {
		out, errOut, code := ctl(t, string(certPEM), append(args, "--addr", addr)...)
		req := f.lastRecord()
		if code != 0 || req.GetName() != "connections/ips" || !bytes.Equal(req.GetCertificate(), certPEM) || req.GetFingerprint() != "" ||
			!hasRow(out, "SHA-256:", hexPairs(sum[:])) || !hasRow(out, "Matches IPS:", "yes") || !strings.Contains(out, "Login name:    (empty: SF's built-in technical user)\n") ||
			strings.Contains(out, "Configuration:") {
			t.Errorf("%v: exit %d, request %v\n%s%s", args, code, req, out, errOut)
		}
	}

	out, errOut, code = ctl(t, "", "record-mapping", "ips", "--fingerprint", "ab:cd", "-o", "json", "--addr", addr)
	var got struct {
		Mapping struct {
			ID     string `json:"id"`
			Source string `json:"source"`
		} `json:"mapping"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Mapping.ID != "rec-1" || got.Mapping.Source != "EVIDENCE_SOURCE_PERSON" {
		t.Errorf("json: exit %d %+v\n%s%s", code, got, out, errOut)
	}

	// Neither or both is a usage error that never reaches the server.
	before := f.calls()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"record-mapping", "ips"}, "--fingerprint"},
		{[]string{"record-mapping", "ips", "--fingerprint", " "}, "--certificate"},
		{[]string{"record-mapping", "ips", "--fingerprint", "ab:cd", "--certificate", certFile}, "not both"},
		{[]string{"record-mapping", "ips", "--certificate", "/nonexistent/sf.crt"}, "nonexistent"},
		{[]string{"record-mapping", "--fingerprint", "ab:cd"}, "usage"},
	} {
		out, errOut, code := ctl(t, "", append(tc.args, "--addr", addr)...)
		if code != 3 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d\n%s%s", tc.args, code, out, errOut)
		}
	}
	if f.calls() != before {
		t.Errorf("a usage error reached the server")
	}
	// The server's refusal.
	if _, errOut, code := ctl(t, "not a certificate", "record-mapping", "ips", "--certificate", "-", "--addr", addr); code != 3 || !strings.Contains(errOut, "InvalidArgument") {
		t.Errorf("refusal: exit %d %q", code, errOut)
	}
}
