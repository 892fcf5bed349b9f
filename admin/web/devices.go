package web

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gatekeeper-dev/gatekeeper/admin"
)

// The device pages: a person's own computers, with "Add this computer",
// and the account holder's list of every device (the seeds' "Mobile
// Devices" screen).

const sectionDevices = "devices"

type myDevicesData struct {
	Devices []admin.DeviceView
	// Code, when set, is a code just made, with the command to run.
	Code    *admin.EnrollmentCode
	Command string
	Form    *form
}

func (p *Pages) myDevicesPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return p.showMyDevices(w, r, c, http.StatusOK, myDevicesData{Form: newForm()})
}

func (p *Pages) showMyDevices(w http.ResponseWriter, r *http.Request, c *call, status int, d myDevicesData) error {
	ds, err := p.svc.MyDevices(r.Context(), c.actor)
	if err != nil {
		return err
	}
	d.Devices = ds
	pg := p.newPage(c, "Your computers")
	pg.current("/me/devices")
	pg.Data = d
	p.render(w, r, status, "my_devices", pg)
	return nil
}

var codeFields = fields{"field:name": "name", admin.CodeNoDesktopAccess: ""}

// addDevice makes an enrolment code and shows it with the exact command
// to run on the computer. The code is shown once, on this answer only.
func (p *Pages) addDevice(w http.ResponseWriter, r *http.Request, c *call) error {
	f := newForm()
	f.Values["name"] = trim(strings.TrimSpace(r.PostFormValue("name")), 64)
	code, err := p.svc.CreateEnrollment(r.Context(), c.actor, f.Values["name"])
	if err != nil {
		status, ok := codeFields.place(w, f, err)
		if !ok {
			return err
		}
		return p.showMyDevices(w, r, c, status, myDevicesData{Form: f})
	}
	name := f.Values["name"]
	if name == "" {
		name = "my computer"
	}
	cmd := fmt.Sprintf(`gatekeeper connect enroll -admin-url https://%s/ -code %s -name %q -identity gatekeeper.identity`,
		r.Host, code.Code, name)
	return p.showMyDevices(w, r, c, http.StatusOK, myDevicesData{Code: &code, Command: cmd, Form: newForm()})
}

// deactivateMyDevice makes one of the caller's devices inactive.
func (p *Pages) deactivateMyDevice(w http.ResponseWriter, r *http.Request, c *call) error {
	off := false
	res, err := p.svc.UpdateDevice(r.Context(), c.actor, "", r.PathValue("id"), true, admin.DevicePatch{Active: &off})
	if err != nil {
		return err
	}
	setFlash(w, flashOK, fmt.Sprintf("%s is inactive: it can no longer connect.", res.Device.Name))
	return redirectTo("/me/devices")
}

type devicesData struct {
	Devices []admin.DeviceView
}

func (p *Pages) devicesPage(w http.ResponseWriter, r *http.Request, c *call) error {
	pg, err := p.masterPage(r, c, sectionDevices, "Devices")
	if err != nil {
		return err
	}
	ds, err := p.svc.Devices(r.Context(), c.actor, pg.Account.ID)
	if err != nil {
		return err
	}
	pg.Data = devicesData{Devices: ds}
	p.render(w, r, http.StatusOK, "devices", pg)
	return nil
}

// updateDevice is the master's Inactive / Active / Approve buttons.
func (p *Pages) updateDevice(w http.ResponseWriter, r *http.Request, c *call) error {
	acct := r.PathValue("acct")
	yes, no := true, false
	var patch admin.DevicePatch
	switch r.PostFormValue("set") {
	case "inactive":
		patch.Active = &no
	case "active":
		patch.Active = &yes
	case "approved":
		patch.Approved = &yes
	default:
		return &admin.Error{Status: http.StatusBadRequest, Code: admin.CodeInvalidRequest, Msg: "set must be inactive, active or approved"}
	}
	res, err := p.svc.UpdateDevice(r.Context(), c.actor, acct, r.PathValue("id"), false, patch)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%s (%s) is %s.", res.Device.Name, res.Device.Owner, res.Device.Status)
	if res.LeasesRevoked > 0 {
		msg += fmt.Sprintf(" %s removed.", count(res.LeasesRevoked, "lease"))
	}
	setFlash(w, flashOK, msg)
	return redirectTo(accountPath(acct, sectionDevices))
}
