package sfhost

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		host string
		want Kind
	}{
		{"api15preview.cert.sapsf.cn", KindCertHost},
		{"api4.cert.successfactors.com", KindCertHost},
		{"API4.CERT.SuccessFactors.COM", KindCertHost},
		{"api4.cert.successfactors.com:443", KindCertHost},
		{"api4.cert.successfactors.com.", KindCertHost},
		{"api4.cert.successfactors.com.:443", KindCertHost},
		{"  api4.cert.successfactors.com  ", KindCertHost},
		{"api55.cert.sapsf.eu", KindCertHost},
		{"api.cert.hr.cloud.sap", KindCertHost},
		{"api18.cert.sapcloud.cn", KindCertHost},
		{"api2.cert.successfactors.eu", KindCertHost},
		{"api8.cert.sapsf.com", KindCertHost},
		{"api4.successfactors.com", KindPlainHost},
		{"api4.successfactors.com:8443", KindPlainHost},
		{"api15preview.sapsf.cn", KindPlainHost},
		{"successfactors.com", KindPlainHost},
		{"cert.successfactors.com", KindPlainHost},
		{"a.b.cert.sapsf.com", KindPlainHost},
		{"cert.api4.successfactors.com", KindPlainHost},
		{"api.hr.cloud.sap", KindPlainHost},
		{"127.0.0.1", KindUnknownDomain},
		{"127.0.0.1:50443", KindUnknownDomain},
		{"localhost", KindUnknownDomain},
		{"[::1]:443", KindUnknownDomain},
		{"::1", KindUnknownDomain},
		{"", KindUnknownDomain},
		{".", KindUnknownDomain},
		{"api4.cert.successfactors.com.evil.example", KindUnknownDomain},
		{"evilsuccessfactors.com", KindUnknownDomain},
		{"api4..successfactors.com", KindUnknownDomain},
		{".successfactors.com", KindUnknownDomain},
		{"api 4.successfactors.com", KindUnknownDomain},
		{"cloud.sap", KindUnknownDomain},
		{"sapsf.org", KindUnknownDomain},
	}
	for _, tt := range tests {
		if got := Classify(tt.host); got != tt.want {
			t.Errorf("Classify(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
}

func TestCertHostFor(t *testing.T) {
	tests := []struct {
		host string
		want string
	}{
		{"api4.successfactors.com", "api4.cert.successfactors.com"},
		{"API4.SuccessFactors.com:443", "api4.cert.successfactors.com"},
		{"api4.successfactors.com.", "api4.cert.successfactors.com"},
		{"api15preview.sapsf.cn", "api15preview.cert.sapsf.cn"},
		{"api.hr.cloud.sap", "api.cert.hr.cloud.sap"},
		{"api55.sapsf.eu", "api55.cert.sapsf.eu"},
		{"api4.cert.successfactors.com", ""},
		{"successfactors.com", ""},
		{"cert.successfactors.com", ""},
		{"a.b.successfactors.com", ""},
		{"127.0.0.1", ""},
		{"localhost", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got := CertHostFor(tt.host)
		if got != tt.want {
			t.Errorf("CertHostFor(%q) = %q, want %q", tt.host, got, tt.want)
		}
		// A suggestion that is not itself a cert host would send operators in
		// a circle.
		if got != "" && Classify(got) != KindCertHost {
			t.Errorf("CertHostFor(%q) = %q, which Classify calls %v", tt.host, got, Classify(got))
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		KindUnknownDomain: "UnknownDomain",
		KindCertHost:      "CertHost",
		KindPlainHost:     "PlainHost",
		Kind(7):           "Kind(7)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
