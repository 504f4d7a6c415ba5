package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/certsync/certsync/service/diagnose"
	"github.com/certsync/certsync/service/fault"
	"github.com/certsync/certsync/service/store"
	"github.com/certsync/certsync/service/x509cert"
)

// ErrorDomain is the ErrorInfo domain of every certsync error.
const ErrorDomain = "certsync"

var kindCodes = map[fault.Kind]codes.Code{
	fault.Internal:           codes.Internal,
	fault.InvalidArgument:    codes.InvalidArgument,
	fault.NotFound:           codes.NotFound,
	fault.FailedPrecondition: codes.FailedPrecondition,
	fault.Aborted:            codes.Aborted,
	fault.Unavailable:        codes.Unavailable,
	fault.ResourceExhausted:  codes.ResourceExhausted,
	fault.DeadlineExceeded:   codes.DeadlineExceeded,
	fault.PermissionDenied:   codes.PermissionDenied,
	fault.Unauthenticated:    codes.Unauthenticated,
	fault.Unimplemented:      codes.Unimplemented,
}

// toStatus is the one place where domain errors become gRPC statuses. Known
// failures carry an ErrorInfo and the detail that fits; anything else is an
// unexpected fault, logged here with its cause and answered with a generic
// INTERNAL so that nothing internal leaks to callers.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	// Only the call's own context says the caller gave up; a timeout inside
	// (one attempt at SF, say) is the domain's to explain.
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return status.Error(codes.DeadlineExceeded, "the call's deadline passed before it finished")
	case context.Canceled:
		return status.Error(codes.Canceled, "the call was cancelled")
	}
	fe := asFault(err)
	if fe == nil || fe.Kind == fault.Internal {
		log.ErrorContext(ctx, "internal error", "err", err)
		return status.Error(codes.Internal, "internal error; the server log has the details")
	}
	if fe.Cause != nil {
		log.DebugContext(ctx, "request failed", "reason", fe.Reason, "err", fe.Cause)
	}
	return faultStatus(fe)
}

// asFault recognises the error types of domain packages that do not speak
// fault themselves.
func asFault(err error) *fault.Error {
	if fe, ok := fault.As(err); ok {
		return fe
	}
	var ie *x509cert.InputError
	if errors.As(err, &ie) {
		return fault.Invalid("data", ie.Reason, "%s", ie.Message)
	}
	if errors.Is(err, store.ErrInvalidPageToken) {
		return fault.Invalid("page_token", "INVALID_PAGE_TOKEN", "page_token is not one this server issued for this listing; start again with an empty page_token")
	}
	var tl *diagnose.TooLongError
	if errors.As(err, &tl) {
		return fault.Invalid("text", "TEXT_TOO_LONG", "%s", tl.Error())
	}
	return nil
}

func faultStatus(fe *fault.Error) error {
	code, ok := kindCodes[fe.Kind]
	if !ok {
		code = codes.Internal
	}
	st := status.New(code, fe.Message)
	meta := map[string]string{}
	for k, v := range fe.Metadata {
		meta[k] = v
	}
	if len(fe.Fields) == 1 {
		meta["field"] = fe.Fields[0].Field
	}
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: fe.Reason, Domain: ErrorDomain, Metadata: meta}}
	if len(fe.Fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range fe.Fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Description, Reason: f.Reason})
		}
		details = append(details, br)
	}
	if len(fe.Violations) > 0 {
		pf := &errdetails.PreconditionFailure{}
		for _, v := range fe.Violations {
			pf.Violations = append(pf.Violations, &errdetails.PreconditionFailure_Violation{Type: v.Type, Subject: v.Subject, Description: v.Description})
		}
		details = append(details, pf)
	}
	if fe.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(fe.RetryAfter.Round(time.Millisecond))})
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}
