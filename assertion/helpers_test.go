package assertion_test

import "crypto/elliptic"

func p256() elliptic.Curve { return elliptic.P256() }
