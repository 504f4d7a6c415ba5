package main

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// describeDetails renders a status's error details as lines for people.
func describeDetails(st *status.Status) []string {
	var out []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			keys := make([]string, 0, len(d.GetMetadata()))
			for k := range d.GetMetadata() {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var kv []string
			for _, k := range keys {
				kv = append(kv, k+"="+d.GetMetadata()[k])
			}
			line := "reason: " + d.GetReason()
			if len(kv) > 0 {
				line += " (" + strings.Join(kv, ", ") + ")"
			}
			out = append(out, line)
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				out = append(out, fmt.Sprintf("field %s: %s", v.GetField(), v.GetDescription()))
			}
		case *errdetails.PreconditionFailure:
			for _, v := range d.GetViolations() {
				out = append(out, fmt.Sprintf("precondition %s %s: %s", v.GetType(), v.GetSubject(), v.GetDescription()))
			}
		case *errdetails.RetryInfo:
			out = append(out, "retry after: "+d.GetRetryDelay().AsDuration().String())
		}
	}
	return out
}
