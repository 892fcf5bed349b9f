package service

import (
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"testing"
)

// unquoteExecStart splits an ExecStart= value as systemd does for the
// forms systemdQuote writes: words at white space, double quotes that
// group, \\ and \" escapes inside them; then %% and $$ (specifiers and
// variables) become % and $.
func unquoteExecStart(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\':
			if i+1 == len(line) || (line[i+1] != '\\' && line[i+1] != '"') {
				return nil, errors.New("unknown escape")
			}
			i++
			cur.WriteByte(line[i])
		case quoted && c == '"':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '"':
			quoted, inWord = true, true
		case c == '\\' || c == '\'':
			return nil, errors.New("unquoted escape or single quote")
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, errors.New("unbalanced quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	for i, w := range words {
		words[i] = strings.NewReplacer("%%", "%", "$$", "$").Replace(w)
	}
	return words, nil
}

// FuzzServiceDefinition: a flag value, whatever it holds, is either refused
// or saved so that the service gets it back intact, and never adds a line
// or a setting to the definition.
func FuzzServiceDefinition(f *testing.F) {
	for _, a := range trickyArgs {
		f.Add(a)
	}
	for _, a := range []string{"", " ", `\`, `"`, "a\nb", "%n", "$$", "]]>", "\xff", "\uFFFE", "é ü"} {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		spec := Spec{Name: "gatekeeper-connect", Executable: "/usr/local/bin/gatekeeper", Args: []string{"connect", arg}}
		plain := spec
		plain.Args = []string{"connect", "x"}
		unit, err := (&Systemd{}).Render(spec)
		if err != nil {
			if _, err2 := (&Launchd{}).Render(spec); err2 == nil {
				t.Fatalf("systemd refused %q (%v), launchd took it", arg, err)
			}
			return
		}
		plainUnit, _ := (&Systemd{}).Render(plain)
		if strings.Count(string(unit), "\n") != strings.Count(string(plainUnit), "\n") {
			t.Fatalf("%q changed the unit's lines:\n%s", arg, unit)
		}
		var exec string
		for line := range strings.SplitSeq(string(unit), "\n") {
			if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
				exec = v
			}
		}
		words, err := unquoteExecStart(exec)
		if want := []string{spec.Executable, "connect", arg}; err != nil || !slices.Equal(words, want) {
			t.Fatalf("ExecStart=%s reads back as %q, %v; want %q", exec, words, err, want)
		}

		plist, err := (&Launchd{}).Render(spec)
		if err != nil {
			t.Fatalf("launchd refused %q: %v (systemd took it)", arg, err)
		}
		var doc struct {
			Dict plistDict `xml:"dict"`
		}
		if err := xml.Unmarshal(plist, &doc); err != nil {
			t.Fatalf("%q: property list not well-formed: %v", arg, err)
		}
		for _, it := range doc.Dict.Items {
			if it.XMLName.Local == "array" {
				if want := []string{spec.Executable, "connect", arg}; !slices.Equal(it.Strings, want) {
					t.Fatalf("ProgramArguments %q, want %q", it.Strings, want)
				}
			}
		}
	})
}
