package autofix

import (
	"testing"
	"time"
)

func TestWindows(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse("Mon 2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		window string
		t      string
		in     bool
	}{
		{"Mon-Fri 22:00-04:00", "Mon 2026-11-23 23:00", true},
		{"Mon-Fri 22:00-04:00", "Tue 2026-11-24 03:59", true}, // Monday's window, past midnight
		{"Mon-Fri 22:00-04:00", "Tue 2026-11-24 04:00", false},
		{"Mon-Fri 22:00-04:00", "Sat 2026-11-28 02:00", true}, // Friday's window
		{"Mon-Fri 22:00-04:00", "Mon 2026-11-23 02:00", false},
		{"Mon-Fri 22:00-04:00", "Sat 2026-11-28 23:00", false},
		{"Sat 00:00-24:00", "Sat 2026-11-28 12:00", true},
		{"Sat 00:00-24:00", "Sun 2026-11-29 00:00", false},
		{"Mon,Wed 01:00-02:00", "Wed 2026-11-25 01:30", true},
		{"Mon,Wed 01:00-02:00", "Tue 2026-11-24 01:30", false},
		{"Fri-Mon 10:00-11:00", "Sun 2026-11-29 10:30", true}, // a range across the week's end
	}
	for _, tt := range tests {
		w, err := ParseWindow(tt.window)
		if err != nil {
			t.Fatalf("%s: %v", tt.window, err)
		}
		if got := w.Contains(at(tt.t)); got != tt.in {
			t.Errorf("%s at %s = %v, want %v", tt.window, tt.t, got, tt.in)
		}
	}
	for _, bad := range []string{"", "Mon", "Funday 10:00-11:00", "Mon 10:00", "Mon 25:00-26:00", "Mon 10:00-10:00", "Mon 10:60-11:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
