package connector

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParsePins: pins come from the command line or a configuration file;
// whatever the text, parsing never panics, and the pins it returns print
// back to text that parses to the same pins.
func FuzzParsePins(f *testing.F) {
	for _, s := range []string{
		"sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"sha1//abc", "", ";;", "sha256//", "not base64!",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pins, err := ParsePins(s)
		if err != nil {
			return
		}
		var parts []string
		for _, p := range pins {
			parts = append(parts, p.String())
		}
		again, err := ParsePins(strings.Join(parts, ";"))
		if err != nil || !slices.Equal(again, pins) {
			t.Fatalf("ParsePins(%q) = %v; printed and parsed again: %v, %v", s, pins, again, err)
		}
	})
}
