package admin

import "net/http"

// codeBody is the body of POST /api/v1/me/mfa/totp/confirm.
type codeBody struct {
	Code string `json:"code"`
}

func (s *Server) beginTOTP(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.BeginTOTP(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request, c *call) error {
	var b codeBody
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.ConfirmTOTP(r.Context(), c.actor, b.Code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) removeTOTP(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.RemoveTOTP(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) clearUserFactor(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.ClearUserFactor(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("username"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) clearMasterFactor(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.ClearMasterFactor(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) mySessions(w http.ResponseWriter, r *http.Request, c *call) error {
	v, err := s.svc.MySessions(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": v})
	return nil
}

func (s *Server) endMySession(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := s.svc.EndMySession(r.Context(), c.actor, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) accountSessions(w http.ResponseWriter, r *http.Request, c *call) error {
	v, err := s.svc.AccountSessions(r.Context(), c.actor, r.PathValue("acct"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"sessions": v})
	return nil
}

func (s *Server) endAccountSession(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := s.svc.EndAccountSession(r.Context(), c.actor, r.PathValue("acct"), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) beginPasskeyRegistration(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.BeginPasskeyRegistration(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) finishPasskeyRegistration(w http.ResponseWriter, r *http.Request, c *call) error {
	var b PasskeyRegistration
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.FinishPasskeyRegistration(r.Context(), c.actor, b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, res)
	return nil
}

func (s *Server) passkeys(w http.ResponseWriter, r *http.Request, c *call) error {
	v, err := s.svc.Passkeys(r.Context(), c.actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"passkeys": v})
	return nil
}

func (s *Server) removePasskey(w http.ResponseWriter, r *http.Request, c *call) error {
	res, err := s.svc.RemovePasskey(r.Context(), c.actor, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) renamePasskey(w http.ResponseWriter, r *http.Request, c *call) error {
	var b struct {
		Name string `json:"name"`
	}
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	res, err := s.svc.RenamePasskey(r.Context(), c.actor, r.PathValue("id"), b.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) beginPasskeyLogin(w http.ResponseWriter, r *http.Request, c *call) error {
	var b PasskeyLoginBegin
	if err := readBody(r, &b, true); err != nil {
		return err
	}
	res, err := s.svc.BeginPasskeyLogin(r.Context(), b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) finishPasskeyLogin(w http.ResponseWriter, r *http.Request, c *call) error {
	var b PasskeyLogin
	if err := readBody(r, &b, false); err != nil {
		return err
	}
	b.UserAgent = r.UserAgent()
	res, err := s.svc.FinishPasskeyLogin(r.Context(), b, c.ip)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
