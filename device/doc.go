// Package device provides what a device and the admin listener must agree
// on: the enrolment code's form, the identity file a device keeps, and how
// a device signs a request and how the server checks it.
//
// A device's credential is an Ed25519 key pair made on the device. The
// server keeps only the public key. Requests are signed rather than sent
// over mutual TLS so that the admin listener never asks a browser for a
// client certificate, and so that a trusted proxy in front of it does not
// break device authentication. A signature covers the method, the host,
// the path, the body and the signing time; the server refuses a signature
// not later than the last one it accepted from the device, so a copied
// request cannot be replayed.
//
// It does not store devices (policy, store) nor decide who may enrol
// (admin).
package device
