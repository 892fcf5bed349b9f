package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// readBody reads a JSON request body into v, strictly: the content type
// must be application/json (415 otherwise), the size is bounded by the
// MaxBytesReader the server put around it (413 beyond), and the body must
// be one JSON object with no field v does not know (400 otherwise). When
// optional is true, an empty body leaves v as it is.
func readBody(r *http.Request, v any, optional bool) error {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "the body is larger than %d bytes", mbe.Limit)
	}
	if err != nil {
		return badRequest(CodeInvalidRequest, "the body could not be read")
	}
	if optional && len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if mt, params, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" ||
		(params["charset"] != "" && !strings.EqualFold(params["charset"], "utf-8")) {
		return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "send the body as application/json")
	}
	return decodeJSON(b, v)
}

// decodeJSON decodes one JSON object into v, refusing unknown fields and
// anything after the object. Its messages name the field at fault, never
// the value, so that a password cannot end up in a message or a log.
func decodeJSON(b []byte, v any) error {
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return badRequest(CodeInvalidRequest, "the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(CodeInvalidRequest, "%s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(CodeInvalidRequest, "the body must hold one JSON object and nothing after it")
	}
	return nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset)
	case errors.As(err, &te):
		if strings.HasSuffix(te.Type.String(), "Duration") {
			return fmt.Sprintf("field %q must be a duration string like \"90m\" or \"12h\"", te.Field)
		}
		if te.Field != "" {
			return fmt.Sprintf("field %q must be a %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return "the body has a value of the wrong type"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the body ends too early"
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + f
	}
	if strings.Contains(err.Error(), "time: ") || strings.Contains(err.Error(), "duration") {
		return `a duration must be a string like "90m" or "12h"`
	}
	return "the body is not a valid request"
}

func jsonKind(k string) string {
	switch k {
	case "bool":
		return "boolean"
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	}
	if strings.HasPrefix(k, "int") || strings.HasPrefix(k, "uint") || strings.HasPrefix(k, "float") {
		return "number"
	}
	return k
}
