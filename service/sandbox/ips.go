package sandbox

import (
	"net/http"

	"github.com/certsync/certsync/service/pki"
)

// The simulated IPS. Real IPS has no public API for outbound certificates
// (operators download them from the Outbound Certificate tab); this one
// exists so that the sandbox source can be read over HTTPS like any other
// outside input. Certificates are public, so there is no authentication.

func (s *Sandbox) handleIPSCertificates(w http.ResponseWriter, r *http.Request) {
	sys := s.lookupSystem(w, r)
	if sys == nil {
		return
	}
	type slotJSON struct {
		Slot           int    `json:"slot"`
		Active         bool   `json:"active"`
		CertificatePEM string `json:"certificate_pem"`
	}
	s.mu.Lock()
	list := make([]slotJSON, 0, len(sys.slots))
	for i, sl := range sys.slots {
		list = append(list, slotJSON{Slot: i + 1, Active: sl.active, CertificatePEM: string(pki.CertPEM(sl.leaf.Cert))})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string][]slotJSON{"certificates": list})
}

func (s *Sandbox) handleIPSActive(w http.ResponseWriter, r *http.Request) {
	sys := s.lookupSystem(w, r)
	if sys == nil {
		return
	}
	s.mu.Lock()
	a := sys.activeSlot()
	s.mu.Unlock()
	if a == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "IPS system "+quote(sys.id)+" has no active certificate")
		return
	}
	writeRaw(w, http.StatusOK, "application/x-pem-file", pki.CertPEM(a.leaf.Cert))
}

func (s *Sandbox) lookupSystem(w http.ResponseWriter, r *http.Request) *ipsSystem {
	id := r.PathValue("sys")
	s.mu.Lock()
	sys := s.systems[id]
	s.mu.Unlock()
	if sys == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "", "no IPS source system "+quote(id))
	}
	return sys
}
