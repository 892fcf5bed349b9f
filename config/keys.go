package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var typeOfConfig = reflect.TypeFor[Config]()

// walk checks node against the Go type t: it reports unknown keys by path
// and records which path each line holds, so that the decoder's type errors,
// which only know lines, can name keys too.
func walk(n *yaml.Node, path string, t reflect.Type, lines map[int]string, probs *Problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			walk(c, path, t, lines, probs)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		*probs = append(*probs, &Problem{Path: orRoot(path), Line: n.Line, Msg: "YAML aliases are not supported"})
		return
	}
	if _, seen := lines[n.Line]; !seen {
		lines[n.Line] = orRoot(path)
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			lines[k.Line] = p
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				*probs = append(*probs, &Problem{Path: p, Line: k.Line, Msg: "unknown key" + suggestion(t, k.Value)})
				continue
			}
			walk(v, p, f.Type, lines, probs)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			walk(c, fmt.Sprintf("%s[%d]", path, i), t.Elem(), lines, probs)
		}
	case n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode:
		// Type mismatch; the decoder reports it with this line.
	}
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// suggestion names the known keys of t, which is what a typo needs.
func suggestion(t reflect.Type, got string) string {
	var known []string
	for i := range t.NumField() {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "" {
			known = append(known, tag)
		}
	}
	return fmt.Sprintf(" %q (known keys: %s)", got, strings.Join(known, ", "))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "(file)"
	}
	return path
}

// typeProblem turns the decoder's "line 7: cannot unmarshal ..." into a
// problem at the key on that line.
func typeProblem(msg string, lines map[int]string) *Problem {
	rest, ok := strings.CutPrefix(msg, "line ")
	if ok {
		num, tail, found := strings.Cut(rest, ": ")
		if n, err := strconv.Atoi(num); err == nil && found {
			return &Problem{Path: orRoot(lines[n]), Line: n, Msg: strings.ReplaceAll(tail, "!!", "")}
		}
	}
	return &Problem{Path: "(file)", Msg: msg}
}
