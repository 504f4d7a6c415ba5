//go:build !failpoints

package reregister

// failpoint does nothing in normal builds; builds with -tags failpoints may
// stop the process at a step boundary (see failpoint_on.go).
func failpoint(string) {}
