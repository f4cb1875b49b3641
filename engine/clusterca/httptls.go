package clusterca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"time"
)

// httpCertValidity is how long a certificate made by HTTPCertificate is
// valid; it is made anew at every start.
const httpCertValidity = 90 * 24 * time.Hour

// HTTPCertificate makes a TLS certificate for the public HTTP listener,
// valid for hosts (IP addresses or DNS names; localhost and the loopback
// addresses are always added). On the node holding the cluster CA (after
// `myimd cluster init`) the CA signs it, so that clients trusting the
// cluster's ca.pem verify it; elsewhere it is self-signed, and clients
// must pin it. The key lives in memory only.
func HTTPCertificate(dataDir string, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"MyIM cluster"}, CommonName: "myim-http"},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(httpCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	parent, signer := tmpl, any(key)
	var chain [][]byte
	is, err := loadIssuer(dataDir)
	switch {
	case err == nil:
		parent, signer = is.ca, is.key
		if tmpl.NotAfter.After(is.ca.NotAfter) {
			tmpl.NotAfter = is.ca.NotAfter
		}
		chain = append(chain, is.caDER)
	case errors.Is(err, ErrNoClusterCA):
	default:
		return tls.Certificate{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: append([][]byte{der}, chain...), PrivateKey: key}, nil
}
