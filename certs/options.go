package certs

// TLS says where a Manager's certificates come from and how TLS is
// offered: the certs package's own options, which cmd/gatekeeper fills
// from the configuration's tls section.
type TLS struct {
	// ACME, if not nil, obtains and renews certificates from an ACME CA.
	ACME *ACME
	// Certificates are certificate and key PEM files to serve.
	Certificates []CertFile
	// SelfSigned makes a throwaway certificate, for trying gatekeeper out.
	SelfSigned bool
	// Curves are key-exchange group names (KnownCurves) in preference
	// order. If empty, Go's defaults.
	Curves []string
	// CipherSuites are the TLS 1.2 cipher suites offered, by Go's names.
	// If empty, DefaultCipherSuites.
	CipherSuites []string
}

// ACME issues certificates from an ACME CA.
type ACME struct {
	Email string
	// CA is the directory URL; if empty, Let's Encrypt's.
	CA      string
	Domains []string
	// Storage is where certificates and the ACME account are kept
	// (required).
	Storage string
	// CARoot is a PEM file to trust for the CA's own TLS (a test CA).
	CARoot string
	// HTTPAddr is where the HTTP-01 challenge is answered; empty leaves
	// only TLS-ALPN-01.
	HTTPAddr string
}

// CertFile is a certificate and its key in PEM files.
type CertFile struct {
	Cert string
	Key  string
}
