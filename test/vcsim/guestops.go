// Guest file operations for the simulator, which implements them only for container-backed VMs (Docker).
//
// A seeded VM with a "guest" entry (user name and password) gets VMware Tools "running" and a guest file system:
// a folder <dir>/guest/<vm id> standing for the guest's "/". An HTTP wrapper in front of /sdk answers
// MakeDirectoryInGuest, ListFilesInGuest and InitiateFileTransferToGuest for every VM: a VM without a guest
// entry, or not powered on, answers GuestOperationsUnavailable; wrong credentials InvalidGuestLogin; faults
// otherwise follow the real API (FileAlreadyExists, FileNotFound, NotADirectory, InvalidArgument).
// InitiateFileTransferToGuest returns "https://*:<port>/vmkeep-guest/<ticket>" like ESXi (the client puts its
// host in place of "*"); one PUT of exactly fileSize bytes to it writes the file (single use, 0600 unless the
// request carried POSIX permissions).
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"html"
	"io"
	"io/ioutil"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

const guestUploadPrefix = "/vmkeep-guest/"

// seedGuest is the "guest" entry of a seeded VM.
type seedGuest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type guestVM struct {
	username, password, root string
}

type guestTicket struct {
	file      string
	size      int64
	overwrite bool
	mode      os.FileMode
}

type guestOps struct {
	mu      sync.Mutex
	vms     map[string]*guestVM
	tickets map[string]*guestTicket
	next    http.Handler
}

func newGuestOps() *guestOps {
	return &guestOps{vms: map[string]*guestVM{}, tickets: map[string]*guestTicket{}}
}

// enable gives a VM a guest root folder and credentials and marks its Tools running.
func (g *guestOps) enable(dir, vmID string, guest seedGuest) error {
	root := filepath.Join(dir, "guest", vmID)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	g.mu.Lock()
	g.vms[vmID] = &guestVM{username: guest.Username, password: guest.Password, root: root}
	g.mu.Unlock()
	if vm, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "VirtualMachine", Value: vmID}).(*simulator.VirtualMachine); ok {
		vm.Guest.ToolsRunningStatus = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
		vm.Guest.ToolsStatus = types.VirtualMachineToolsStatusToolsOk
		vm.Guest.GuestFamily = string(types.VirtualMachineGuestOsFamilyLinuxGuest)
	}
	return nil
}

type guestEnvelope struct {
	Body struct {
		Req struct {
			XMLName xml.Name
			VM      string `xml:"vm"`
			Auth    struct {
				Username string `xml:"username"`
				Password string `xml:"password"`
			} `xml:"auth"`
			DirectoryPath           string `xml:"directoryPath"`
			CreateParentDirectories bool   `xml:"createParentDirectories"`
			FilePath                string `xml:"filePath"`
			Index                   int    `xml:"index"`
			MaxResults              int    `xml:"maxResults"`
			MatchPattern            string `xml:"matchPattern"`
			GuestFilePath           string `xml:"guestFilePath"`
			FileAttributes          struct {
				Permissions *int64 `xml:"permissions"`
			} `xml:"fileAttributes"`
			FileSize  int64 `xml:"fileSize"`
			Overwrite bool  `xml:"overwrite"`
		} `xml:",any"`
	} `xml:"Body"`
}

var guestMethods = [][]byte{[]byte("MakeDirectoryInGuest"), []byte("ListFilesInGuest"), []byte("InitiateFileTransferToGuest")}

func (g *guestOps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, guestUploadPrefix) {
		g.serveUpload(w, r)
		return
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
		g.next.ServeHTTP(w, r)
		return
	}
	body, ok := readSoapBody(w, r)
	if !ok {
		return
	}
	for _, method := range guestMethods {
		if bytes.Contains(body, method) {
			g.serveSoap(w, r, body)
			return
		}
	}
	g.next.ServeHTTP(w, r)
}

func (g *guestOps) serveSoap(w http.ResponseWriter, r *http.Request, body []byte) {
	var env guestEnvelope
	if !decodeSoap(w, r, body, &env) {
		return
	}
	req := env.Body.Req
	vmID := strings.TrimSpace(req.VM)
	vm, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "VirtualMachine", Value: vmID}).(*simulator.VirtualMachine)
	if !ok {
		writeFault(w, "ManagedObjectNotFound", "", "The object has already been deleted or has not been completely created")
		return
	}
	g.mu.Lock()
	guest := g.vms[vmID]
	g.mu.Unlock()
	if guest == nil || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		writeFault(w, "GuestOperationsUnavailable", "", "The guest operations agent could not be contacted.")
		return
	}
	if req.Auth.Username != guest.username || req.Auth.Password != guest.password {
		writeFault(w, "InvalidGuestLogin", "", "Failed to authenticate with the guest operating system using the supplied credentials.")
		return
	}
	var result string
	var fault, property, message string
	switch req.XMLName.Local {
	case "MakeDirectoryInGuest":
		fault, property, message = guest.makeDirectory(req.DirectoryPath, req.CreateParentDirectories)
	case "ListFilesInGuest":
		result, fault, property, message = guest.list(req.FilePath, req.Index, req.MaxResults, req.MatchPattern)
	case "InitiateFileTransferToGuest":
		var file string
		file, fault, property, message = guest.resolve(req.GuestFilePath)
		if fault == "" {
			fault, message = checkUploadTarget(file, req.Overwrite)
		}
		if fault == "" {
			if req.FileSize < 0 {
				fault, property, message = "InvalidArgument", "fileSize", "A specified parameter was not correct: fileSize"
				break
			}
			mode := os.FileMode(0o600)
			if p := req.FileAttributes.Permissions; p != nil {
				mode = os.FileMode(*p & 0o777)
			}
			ticket := newTicket()
			g.mu.Lock()
			g.tickets[ticket] = &guestTicket{file: file, size: req.FileSize, overwrite: req.Overwrite, mode: mode}
			g.mu.Unlock()
			_, port, _ := net.SplitHostPort(r.Host)
			result = "<returnval>" + html.EscapeString(fmt.Sprintf("https://*:%s%s%s", port, guestUploadPrefix, ticket)) + "</returnval>"
		}
	}
	if fault != "" {
		writeFault(w, fault, property, message)
		return
	}
	name := req.XMLName.Local
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`+
		`<soapenv:Body><`+name+`Response xmlns="urn:vim25">`+result+`</`+name+`Response></soapenv:Body></soapenv:Envelope>`)
}

// resolve maps an absolute guest path to the local file under the VM's root; ".." may not leave the root.
func (v *guestVM) resolve(guestPath string) (string, string, string, string) {
	if !strings.HasPrefix(guestPath, "/") || strings.ContainsRune(guestPath, 0) {
		return "", "InvalidArgument", "path", "A specified parameter was not correct: path must be absolute"
	}
	for _, part := range strings.Split(guestPath, "/") {
		if part == ".." {
			return "", "InvalidArgument", "path", "A specified parameter was not correct: path"
		}
	}
	return filepath.Join(v.root, filepath.FromSlash(path.Clean(guestPath))), "", "", ""
}

func (v *guestVM) makeDirectory(guestPath string, parents bool) (string, string, string) {
	dir, fault, property, message := v.resolve(guestPath)
	if fault != "" {
		return fault, property, message
	}
	if _, err := os.Lstat(dir); err == nil {
		return "FileAlreadyExists", "", "Cannot complete the operation because the file or folder " + guestPath + " already exists"
	}
	parent := filepath.Dir(dir)
	if info, err := os.Stat(parent); err != nil || !info.IsDir() {
		if !parents {
			return "FileNotFound", "", "File " + path.Dir(guestPath) + " was not found"
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return "FileFault", "", err.Error()
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "FileFault", "", err.Error()
	}
	return "", "", ""
}

func fileInfoXML(name string, info os.FileInfo) string {
	kind := "file"
	if info.IsDir() {
		kind = "directory"
	} else if info.Mode()&os.ModeSymlink != 0 {
		kind = "symlink"
	}
	return fmt.Sprintf(`<files><path>%s</path><type>%s</type><size>%d</size><attributes xsi:type="GuestPosixFileAttributes"><modificationTime>%s</modificationTime><permissions>%d</permissions></attributes></files>`,
		html.EscapeString(name), kind, info.Size(), info.ModTime().UTC().Format("2006-01-02T15:04:05Z"), int64(info.Mode().Perm()))
}

// list answers ListFilesInGuest: a file lists itself, a folder "." and its entries (sorted), paged by index.
func (v *guestVM) list(guestPath string, index, maxResults int, pattern string) (string, string, string, string) {
	file, fault, property, message := v.resolve(guestPath)
	if fault != "" {
		return "", fault, property, message
	}
	info, err := os.Lstat(file)
	if err != nil {
		return "", "FileNotFound", "", "File " + guestPath + " was not found"
	}
	var match *regexp.Regexp
	if pattern != "" {
		if match, err = regexp.Compile(pattern); err != nil {
			return "", "InvalidArgument", "matchPattern", "A specified parameter was not correct: matchPattern"
		}
	}
	type item struct {
		name string
		info os.FileInfo
	}
	var items []item
	if !info.IsDir() {
		items = append(items, item{filepath.Base(file), info})
	} else {
		items = append(items, item{".", info})
		entries, err := ioutil.ReadDir(file)
		if err != nil {
			return "", "FileFault", "", err.Error()
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
		for _, e := range entries {
			items = append(items, item{e.Name(), e})
		}
	}
	if match != nil {
		kept := items[:0]
		for _, it := range items {
			if match.MatchString(it.name) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if index > len(items) {
		index = len(items)
	}
	items = items[index:]
	remaining := 0
	if maxResults > 0 && len(items) > maxResults {
		remaining = len(items) - maxResults
		items = items[:maxResults]
	}
	var out strings.Builder
	out.WriteString("<returnval>")
	for _, it := range items {
		out.WriteString(fileInfoXML(it.name, it.info))
	}
	fmt.Fprintf(&out, "<remaining>%d</remaining></returnval>", remaining)
	return out.String(), "", "", ""
}

func checkUploadTarget(file string, overwrite bool) (string, string) {
	if info, err := os.Stat(filepath.Dir(file)); err != nil || !info.IsDir() {
		return "FileNotFound", "File " + filepath.Base(filepath.Dir(file)) + " was not found"
	}
	if info, err := os.Lstat(file); err == nil {
		if info.IsDir() {
			return "NotAFile", "The file is a directory"
		}
		if !overwrite {
			return "FileAlreadyExists", "Cannot complete the operation because the file already exists"
		}
	}
	return "", ""
}

func newTicket() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// serveUpload takes one PUT per ticket: exactly the announced size, written to a temp file then renamed.
func (g *guestOps) serveUpload(w http.ResponseWriter, r *http.Request) {
	ticketID := strings.TrimPrefix(r.URL.Path, guestUploadPrefix)
	g.mu.Lock()
	ticket := g.tickets[ticketID]
	delete(g.tickets, ticketID)
	g.mu.Unlock()
	if ticket == nil || r.Method != http.MethodPut {
		http.Error(w, "unknown or used transfer ticket", http.StatusNotFound)
		return
	}
	if r.ContentLength != ticket.size {
		http.Error(w, fmt.Sprintf("expected %d bytes", ticket.size), http.StatusBadRequest)
		return
	}
	if fault, message := checkUploadTarget(ticket.file, ticket.overwrite); fault != "" {
		http.Error(w, message, http.StatusConflict)
		return
	}
	temp, err := ioutil.TempFile(filepath.Dir(ticket.file), ".upload-*")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	n, err := io.Copy(temp, io.LimitReader(r.Body, ticket.size+1))
	if closeErr := temp.Close(); err == nil {
		err = closeErr
	}
	if err == nil && n != ticket.size {
		err = fmt.Errorf("received %d of %d bytes", n, ticket.size)
	}
	if err == nil {
		err = os.Chmod(temp.Name(), ticket.mode)
	}
	if err == nil {
		err = os.Rename(temp.Name(), ticket.file)
	}
	if err != nil {
		_ = os.Remove(temp.Name())
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}
