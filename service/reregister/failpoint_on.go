//go:build failpoints

package reregister

import (
	"os"
	"syscall"
)

// failpoint kills the process with SIGKILL at the boundary named by
// CERTSYNC_FAILPOINT ("before:DELETE_MAPPING", "after:UPLOAD_CERTIFICATE",
// ...): the crash tests build certsyncd with -tags failpoints to prove that
// no boundary leaves a connection without a mapping. Normal builds do not
// contain this code.
func failpoint(name string) {
	if os.Getenv("CERTSYNC_FAILPOINT") == name {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
