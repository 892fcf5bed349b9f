package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Security descriptors, in SDDL. D:P is a protected DACL: nothing is
// inherited from the parent (ProgramData lets every user create files).
// SY is LocalSystem (the service), BA the Administrators group, BU the
// Users group; FA is full control, 0x1200a9 read and execute. OICI makes
// files and folders created inside inherit the entry.
const (
	// dirSDDL: the service's directory: administrators and the service
	// change it, users may read the status file and the log.
	dirSDDL = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"
	// secretSDDL: the identity: administrators and the service only.
	secretSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
)

// PrepareDir creates dir if needed, owned by the Administrators group with
// a protected DACL: SYSTEM and Administrators full control, Users read. A
// directory that already exists (made by anyone: ProgramData lets users
// create folders) has its owner and DACL reset to these, so that nobody
// who made it first keeps a hold on it. It must run elevated.
func PrepareDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(dirSDDL)
	if err != nil {
		return fmt.Errorf("security descriptor for %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
	err = windows.CreateDirectory(p, sa)
	if err == nil {
		return nil
	}
	if !errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	// It exists: a real directory, not a junction or link to elsewhere
	// whose permissions we would change instead.
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if !fi.IsDir() || fi.Mode()&(os.ModeSymlink|os.ModeIrregular) != 0 {
		return fmt.Errorf("%s is not a plain directory (a link or junction?): remove it and install again", dir)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("security descriptor for %s: %w", dir, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("security descriptor for %s: %w", dir, err)
	}
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		owner, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("set the permissions of %s (run as administrator): %w", dir, err)
	}
	return nil
}

// WriteSecret replaces path with data in a file that only SYSTEM and the
// Administrators group can open: the temporary file is created with that
// protected DACL, so there is no moment when anyone else could, and then
// renamed over path (a rename within a volume keeps the file's own
// security descriptor).
func WriteSecret(path string, data []byte) error {
	sd, err := windows.SecurityDescriptorFromString(secretSDDL)
	if err != nil {
		return fmt.Errorf("security descriptor for %s: %w", path, err)
	}
	tmp := path + ".tmp"
	tp, err := windows.UTF16PtrFromString(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	pp, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), SecurityDescriptor: sd}
	h, err := windows.CreateFile(tp, windows.GENERIC_WRITE, 0, sa, windows.CREATE_ALWAYS, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f := os.NewFile(uintptr(h), tmp)
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = windows.MoveFileEx(tp, pp, windows.MOVEFILE_REPLACE_EXISTING|windows.MOVEFILE_WRITE_THROUGH)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

// CheckSecret returns an error unless path is owned by SYSTEM or the
// Administrators group and its DACL lets nobody else in. Call it before
// using the secret.
func CheckSecret(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (a link?)", path)
	}
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if !machineAdmin(owner) {
		return fmt.Errorf("%s belongs to %s, not to SYSTEM or Administrators: make a new identity as administrator", path, owner)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		// A missing DACL grants everyone everything.
		return fmt.Errorf("%s has no access list: anyone can read it; make a new identity as administrator", path)
	}
	for i := range uint32(dacl.AceCount) {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return fmt.Errorf("check %s: entry %d: %w", path, i, err)
		}
		switch ace.Header.AceType {
		case windows.ACCESS_DENIED_ACE_TYPE:
			continue // takes access away, never gives it
		case windows.ACCESS_ALLOWED_ACE_TYPE:
		default:
			// Object and callback entries can grant access too: refuse
			// what is not plainly one of the two.
			return fmt.Errorf("%s has an access entry of type %d that gatekeeper does not check: make a new identity as administrator", path, ace.Header.AceType)
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		if !machineAdmin(sid) {
			return fmt.Errorf("%s lets %s in: only SYSTEM and Administrators may read it; make a new identity as administrator", path, sid)
		}
	}
	return nil
}

func machineAdmin(sid *windows.SID) bool {
	return sid != nil && (sid.IsWellKnown(windows.WinLocalSystemSid) || sid.IsWellKnown(windows.WinBuiltinAdministratorsSid))
}
