package x509cert

// Reasons are part of the API contract: handlers copy them into the
// google.rpc.ErrorInfo reason, and operators script against them.
const (
	ReasonEmptyInput           = "EMPTY_INPUT"
	ReasonInputTooLarge        = "INPUT_TOO_LARGE"
	ReasonTooManyCertificates  = "TOO_MANY_CERTIFICATES"
	ReasonPrivateKeyRefused    = "PRIVATE_KEY_REFUSED"
	ReasonNotACertificate      = "NOT_A_CERTIFICATE"
	ReasonTruncatedPEM         = "TRUNCATED_PEM"
	ReasonMalformedCertificate = "MALFORMED_CERTIFICATE"
	ReasonUnrecognizedInput    = "UNRECOGNIZED_INPUT"
	ReasonInvalidFingerprint   = "INVALID_FINGERPRINT"
)

// InputError says what was wrong with the input. Reason is UPPER_SNAKE_CASE;
// Message is for people and never contains key material or echoes the input,
// so that it can be returned to callers and logged as it is.
type InputError struct {
	Reason  string
	Message string
	// Metadata holds the dynamic values of Message (limits, sizes, block
	// numbers) under lower_snake_case keys, so that handlers can put them into
	// the ErrorInfo metadata without parsing Message. It may be nil.
	Metadata map[string]string
}

// Error returns Message alone: it is already written for the caller, and a
// package prefix would only leak an implementation detail into responses.
func (e *InputError) Error() string { return e.Message }

func inputError(reason, message string, kv ...string) *InputError {
	e := &InputError{Reason: reason, Message: message}
	if len(kv) > 0 {
		e.Metadata = make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			e.Metadata[kv[i]] = kv[i+1]
		}
	}
	return e
}
