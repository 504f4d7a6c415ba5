package auth

import (
	"strings"

	certsyncv1 "github.com/certsync/certsync/gen/certsync/v1"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// scope says where a request names the connection it touches, which decides
// how the interceptors check an identity's connection patterns.
type scope int

const (
	// scopeNone: the request touches no connection's data (parsing input
	// the caller sent).
	scopeNone scope = iota
	// scopeName: the request's `name` field is "connections/{id}" or the
	// bare id; checked by the interceptors.
	scopeName
	// scopeFilter: the request's `connection` field filters a listing. A
	// scoped identity must name a connection it may access: an empty filter
	// would list every connection's records.
	scopeFilter
	// scopeOperation: the request names an operation; the handler must
	// check MayAccess on the operation's connection once it has loaded it.
	scopeOperation
	// scopeServerFilters: the request lists connections; the handler must
	// leave out those the identity may not access.
	scopeServerFilters
	// scopeGlobal: the answer covers every connection; only identities
	// without connection patterns may call it.
	scopeGlobal
	// scopeHealth: grpc.health.v1 Check and Watch; the `service` field is ""
	// (open when OpenHealth) or "connections/{id}" (viewer, scope checked).
	scopeHealth
)

type policy struct {
	role  Role
	scope scope
	// open: callable without credentials when the matching option is on.
	openReflection bool
	// probe: every call costs a login at SF, so calls are rate-limited.
	probe bool
}

const svc = "/" + "certsync.v1.CertSyncService" + "/"

// policies is the one policy table. Every method of CertSyncService must be
// listed (a test enforces it); anything not listed needs an approver without
// connection patterns, so that a new RPC is closed until someone decides.
var policies = map[string]policy{
	// Viewer: reads, and the gate.
	certsyncv1.CertSyncService_ListConnections_FullMethodName:        {role: RoleViewer, scope: scopeServerFilters},
	certsyncv1.CertSyncService_GetConnection_FullMethodName:          {role: RoleViewer, scope: scopeName},
	certsyncv1.CertSyncService_InspectCertificate_FullMethodName:     {role: RoleViewer, scope: scopeNone},
	certsyncv1.CertSyncService_DiagnoseJobError_FullMethodName:       {role: RoleViewer, scope: scopeNone},
	certsyncv1.CertSyncService_CompareFingerprints_FullMethodName:    {role: RoleViewer, scope: scopeName},
	certsyncv1.CertSyncService_ProbeScimAuth_FullMethodName:          {role: RoleViewer, scope: scopeName, probe: true},
	certsyncv1.CertSyncService_CheckGate_FullMethodName:              {role: RoleViewer, scope: scopeName},
	certsyncv1.CertSyncService_WatchGate_FullMethodName:              {role: RoleViewer, scope: scopeName},
	certsyncv1.CertSyncService_GetOperation_FullMethodName:           {role: RoleViewer, scope: scopeOperation},
	certsyncv1.CertSyncService_ListOperations_FullMethodName:         {role: RoleViewer, scope: scopeFilter},
	certsyncv1.CertSyncService_WaitOperation_FullMethodName:          {role: RoleViewer, scope: scopeOperation},
	certsyncv1.CertSyncService_ListSourceCertificates_FullMethodName: {role: RoleViewer, scope: scopeName},
	certsyncv1.CertSyncService_GetEscalationBundle_FullMethodName:    {role: RoleViewer, scope: scopeName},
	certsyncv1.CertSyncService_GetProvisioningJob_FullMethodName:     {role: RoleViewer, scope: scopeName},

	// Operator: changes, and the audit log.
	certsyncv1.CertSyncService_ReregisterCertificate_FullMethodName:   {role: RoleOperator, scope: scopeName},
	certsyncv1.CertSyncService_CancelOperation_FullMethodName:         {role: RoleOperator, scope: scopeOperation},
	certsyncv1.CertSyncService_ConfirmOperationStep_FullMethodName:    {role: RoleOperator, scope: scopeOperation},
	certsyncv1.CertSyncService_RecordTargetMapping_FullMethodName:     {role: RoleOperator, scope: scopeName},
	certsyncv1.CertSyncService_ImportSourceCertificate_FullMethodName: {role: RoleOperator, scope: scopeName},
	certsyncv1.CertSyncService_StartProvisioningJob_FullMethodName:    {role: RoleOperator, scope: scopeName},
	certsyncv1.CertSyncService_ListAuditEvents_FullMethodName:         {role: RoleOperator, scope: scopeFilter},
	// The hash chain spans every connection's events.
	certsyncv1.CertSyncService_VerifyAuditLog_FullMethodName: {role: RoleOperator, scope: scopeGlobal},

	// Approver.
	certsyncv1.CertSyncService_ApproveOperation_FullMethodName: {role: RoleApprover, scope: scopeOperation},

	// Health: "" is open by default; per-connection statuses reveal the
	// inventory and a verdict, so they need a viewer of that connection.
	healthpb.Health_Check_FullMethodName: {role: RoleViewer, scope: scopeHealth},
	healthpb.Health_Watch_FullMethodName: {role: RoleViewer, scope: scopeHealth},
	// List returns every status at once, i.e. every connection.
	healthpb.Health_List_FullMethodName: {role: RoleViewer, scope: scopeGlobal},

	// Reflection: the schema is public (DESIGN.md), open by default.
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {role: RoleViewer, scope: scopeNone, openReflection: true},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {role: RoleViewer, scope: scopeNone, openReflection: true},
}

// unknownPolicy applies to methods the table does not list: fail closed.
var unknownPolicy = policy{role: RoleApprover, scope: scopeGlobal}

func policyFor(fullMethod string) policy {
	if p, ok := policies[fullMethod]; ok {
		return p
	}
	return unknownPolicy
}

// RequiredRole returns the role a method needs: the policy table's entry,
// or RoleApprover for methods it does not list. Open access (overall
// health, reflection) is an exception decided by Options, not a role.
func RequiredRole(fullMethod string) Role { return policyFor(fullMethod).role }

// rpcName shortens "/certsync.v1.CertSyncService/CheckGate" to "CheckGate"
// for messages; other services keep their full name.
func rpcName(fullMethod string) string {
	if s, ok := strings.CutPrefix(fullMethod, svc); ok {
		return s
	}
	return strings.TrimPrefix(fullMethod, "/")
}
