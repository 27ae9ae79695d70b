// Changed block tracking for the simulator, which has none: snapshots get real changeIds on their disk
// backings, and QueryChangedDiskAreas answers from what actually changed in the disks' data files.
//
// At every CreateSnapshot of a VM with changeTrackingEnabled, each disk's data file is fingerprinted per
// 64 KiB block (CRC-32C and CRC-32 as one 64-bit sum, and an all-zero flag; all cores at once) and the snapshot's disk backings get a changeId
// "<epoch uuid>/<sequence>". QueryChangedDiskAreas(vm, snapshot, deviceKey, startOffset, changeId) compares the
// snapshot's fingerprint with the one taken at changeId ("*": the allocated, non-zero blocks) and answers at
// most one page of the disk per call, like the real API. Turning changeTrackingEnabled off (ReconfigVM_Task)
// forgets every changeId of the VM (a CBT reset); resizing a disk starts a new epoch too. Faults follow the real
// API: an unknown changeId or a bad startOffset is InvalidArgument, a snapshot disk without CBT a FileFault.
//
// The simulator dispatches methods on the objects of its registry, and its snapshot code type-asserts VMs to
// *simulator.VirtualMachine, so a wrapper type in the registry would break snapshot removal. Instead a registry
// handler sees snapshot creation (the snapshot.currentSnapshot update), and an HTTP wrapper in front of /sdk
// answers QueryChangedDiskAreas and watches ReconfigVM_Task for resets.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"hash/crc32"
	"html"
	"io"
	"io/ioutil"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	cbtBlockSize   = 64 * 1024
	defaultCbtPage = 64 * 1024 * 1024
	// Fingerprints kept per disk per epoch (older changeIds are then rejected like expired ones).
	cbtKeepFingerprints = 16
)

type fingerprint struct {
	capacity  int64
	sums      []uint64
	allocated []bool
}

type diskEpoch struct {
	uuid     string
	seq      int
	capacity int64
	points   map[string]*fingerprint // changeId → fingerprint
	order    []string
}

type vmTracking struct {
	overReport bool
	page       int64
	enabled    bool
	epochs     map[int32]*diskEpoch
	// snapshot id → device key → changeId of that disk in the snapshot
	snapshots map[string]map[int32]string
}

// cbtTracker holds the CBT state of every VM; it is the registry handler and the HTTP wrapper.
type cbtTracker struct {
	mu         sync.Mutex
	self       types.ManagedObjectReference
	datastores []readyDatastore
	vms        map[string]*vmTracking
	seen       map[string]bool // snapshot ids already handled
	next       http.Handler
}

func newCbtTracker(datastores []readyDatastore) *cbtTracker {
	return &cbtTracker{
		self:       types.ManagedObjectReference{Type: "VmkeepCbtTracker", Value: "vmkeep-cbt"},
		datastores: datastores,
		vms:        map[string]*vmTracking{},
		seen:       map[string]bool{},
	}
}

// configure sets the per-VM options of a seeded VM and marks every VM as supporting CBT.
func (c *cbtTracker) configure(vmID string, overReport bool, page int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.vmLocked(vmID)
	t.overReport = overReport
	if page > 0 {
		t.page = page
	}
}

func (c *cbtTracker) vmLocked(vmID string) *vmTracking {
	t := c.vms[vmID]
	if t == nil {
		t = &vmTracking{page: defaultCbtPage, epochs: map[int32]*diskEpoch{}, snapshots: map[string]map[int32]string{}}
		c.vms[vmID] = t
	}
	return t
}

// Reference, PutObject, UpdateObject, RemoveObject: simulator.RegisterObject.
func (c *cbtTracker) Reference() types.ManagedObjectReference { return c.self }
func (c *cbtTracker) PutObject(mo.Reference)                  {}

func (c *cbtTracker) RemoveObject(ref types.ManagedObjectReference) {
	if ref.Type != "VirtualMachineSnapshot" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.vms {
		delete(t.snapshots, ref.Value)
	}
}

func (c *cbtTracker) UpdateObject(obj mo.Reference, changes []types.PropertyChange) {
	// The registry hands over the embedded mo.VirtualMachine: look the simulator's object up by reference.
	if obj.Reference().Type != "VirtualMachine" {
		return
	}
	vm, ok := simulator.Map.Get(obj.Reference()).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	for _, change := range changes {
		if change.Name != "snapshot.currentSnapshot" {
			continue
		}
		switch ref := change.Val.(type) {
		case types.ManagedObjectReference:
			c.snapshotCreated(vm, ref)
		case *types.ManagedObjectReference:
			if ref != nil {
				c.snapshotCreated(vm, *ref)
			}
		}
	}
}

// syncEnabled notices changeTrackingEnabled being turned off (a reset) or on.
func (c *cbtTracker) syncEnabled() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, t := range c.vms {
		vm, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "VirtualMachine", Value: id}).(*simulator.VirtualMachine)
		if !ok {
			continue
		}
		enabled := vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
		if !enabled {
			t.epochs = map[int32]*diskEpoch{}
		}
		t.enabled = enabled
	}
}

func (c *cbtTracker) snapshotCreated(vm *simulator.VirtualMachine, ref types.ManagedObjectReference) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[ref.Value] {
		return // currentSnapshot moving back to an existing snapshot (removal, revert)
	}
	c.seen[ref.Value] = true
	snapshot, ok := simulator.Map.Get(ref).(*simulator.VirtualMachineSnapshot)
	if !ok {
		return
	}
	t := c.vmLocked(vm.Self.Value)
	enabled := vm.Config.ChangeTrackingEnabled != nil && *vm.Config.ChangeTrackingEnabled
	if !enabled {
		t.epochs = map[int32]*diskEpoch{}
		t.enabled = false
		return
	}
	t.enabled = true
	ids := map[int32]string{}
	// The snapshot's config shares device pointers with the VM: give it its own disk copies.
	devices := make([]types.BaseVirtualDevice, len(snapshot.Config.Hardware.Device))
	for i, device := range snapshot.Config.Hardware.Device {
		devices[i] = device
		disk, ok := device.(*types.VirtualDisk)
		if !ok {
			continue
		}
		backing, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		fp, err := c.fingerprintDisk(backing.FileName, diskCapacity(disk))
		if err != nil {
			log.Printf("cbt: %s disk %d: %s", vm.Self.Value, disk.Key, err)
			continue
		}
		epoch := t.epochs[disk.Key]
		if epoch == nil || epoch.capacity != fp.capacity {
			epoch = &diskEpoch{uuid: newEpochUUID(), capacity: fp.capacity, points: map[string]*fingerprint{}}
			t.epochs[disk.Key] = epoch
		}
		epoch.seq++
		changeID := fmt.Sprintf("%s/%d", epoch.uuid, epoch.seq)
		epoch.points[changeID] = fp
		epoch.order = append(epoch.order, changeID)
		if len(epoch.order) > cbtKeepFingerprints {
			delete(epoch.points, epoch.order[0])
			epoch.order = epoch.order[1:]
		}
		ids[disk.Key] = changeID

		diskCopy := *disk
		backingCopy := *backing
		backingCopy.ChangeId = changeID
		diskCopy.Backing = &backingCopy
		devices[i] = &diskCopy
	}
	snapshot.Config.Hardware.Device = devices
	t.snapshots[ref.Value] = ids
}

// newEpochUUID looks like the real thing: "52 xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx".
func newEpochUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[0] = 0x52
	parts := make([]string, 16)
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts[:8], " ") + "-" + strings.Join(parts[8:], " ")
}

// dataFile maps a disk backing "[ds] dir/x.vmdk" to its data file: x-flat.vmdk when it exists, else the file.
func (c *cbtTracker) dataFile(fileName string) (string, error) {
	var p object.DatastorePath
	if !p.FromString(fileName) {
		return "", fmt.Errorf("bad file name %q", fileName)
	}
	for _, ds := range c.datastores {
		if ds.Name != p.Datastore {
			continue
		}
		file := filepath.Join(ds.Path, filepath.FromSlash(p.Path))
		if strings.HasSuffix(file, ".vmdk") {
			flat := strings.TrimSuffix(file, ".vmdk") + "-flat.vmdk"
			if _, err := os.Stat(flat); err == nil {
				return flat, nil
			}
		}
		return file, nil
	}
	return "", fmt.Errorf("unknown datastore %q", p.Datastore)
}

func (c *cbtTracker) fingerprintDisk(fileName string, capacity int64) (*fingerprint, error) {
	file, err := c.dataFile(fileName)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	blocks := (capacity + cbtBlockSize - 1) / cbtBlockSize
	fp := &fingerprint{capacity: capacity, sums: make([]uint64, blocks), allocated: make([]bool, blocks)}
	// A real host keeps a change bitmap as writes happen; the simulator has to read the whole file instead, so
	// the file is split into spans that every core reads and sums at once (positioned reads: no shared offset).
	workers := int64(runtime.NumCPU())
	spans := (blocks + fingerprintSpanBlocks - 1) / fingerprintSpanBlocks
	var next int64 = -1
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := int64(0); w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, fingerprintSpanBlocks*cbtBlockSize)
			for {
				span := atomic.AddInt64(&next, 1)
				if span >= spans {
					return
				}
				first := span * fingerprintSpanBlocks
				n, err := f.ReadAt(buf, first*cbtBlockSize)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				for i := first; i < blocks && i < first+fingerprintSpanBlocks; i++ {
					lo := (i - first) * cbtBlockSize
					hi := lo + cbtBlockSize
					if lo > int64(n) {
						lo = int64(n)
					}
					if hi > int64(n) {
						hi = int64(n)
					}
					fp.sums[i], fp.allocated[i] = blockSum(buf[lo:hi])
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return fp, nil
}

// Blocks read and summed at once by one fingerprinting goroutine (4 MiB).
const fingerprintSpanBlocks = 64

var (
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	zeroBlock  = make([]byte, cbtBlockSize)
)

// blockSum is a block's fingerprint: CRC-32C and CRC-32 (IEEE), both computed by CPU instructions, as one 64-bit
// value, and whether the block holds any non-zero byte. Bytes past the end of the file count as zeros.
func blockSum(block []byte) (uint64, bool) {
	sum := uint64(crc32.Checksum(block, castagnoli))<<32 | uint64(crc32.ChecksumIEEE(block))
	return sum, !bytes.Equal(block, zeroBlock[:len(block)])
}

type extent struct{ start, length int64 }

// changedAreas answers one QueryChangedDiskAreas call, or returns a fault.
func (c *cbtTracker) changedAreas(vmID, snapshotID string, key int32, start int64, changeID string) (int64, []extent, types.BaseMethodFault, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.vms[vmID]
	if t == nil {
		return 0, nil, &types.InvalidArgument{InvalidProperty: "_this"}, "no such virtual machine"
	}
	ids, ok := t.snapshots[snapshotID]
	if !ok {
		return 0, nil, &types.InvalidArgument{InvalidProperty: "snapshot"}, "the snapshot is not a snapshot of this VM"
	}
	current, ok := ids[key]
	if !ok {
		return 0, nil, &types.FileFault{}, fmt.Sprintf("changed block tracking is not active for disk %d in this snapshot", key)
	}
	epoch := t.epochs[key]
	var fp *fingerprint
	if epoch != nil {
		fp = epoch.points[current]
	}
	if fp == nil {
		return 0, nil, &types.FileFault{}, "changed block tracking was reset since the snapshot was taken"
	}
	if start < 0 || start >= fp.capacity {
		return 0, nil, &types.InvalidArgument{InvalidProperty: "startOffset"}, "A specified parameter was not correct: startOffset"
	}
	var changed func(i int64) bool
	if changeID == "*" {
		changed = func(i int64) bool { return fp.allocated[i] }
	} else {
		old := epoch.points[changeID]
		if old == nil || !strings.HasPrefix(changeID, epoch.uuid+"/") {
			return 0, nil, &types.InvalidArgument{InvalidProperty: "changeId"}, "A specified parameter was not correct: changeId"
		}
		changed = func(i int64) bool { return old.sums[i] != fp.sums[i] || old.allocated[i] != fp.allocated[i] }
	}
	end := start + t.page
	if end > fp.capacity {
		end = fp.capacity
	}
	var areas []extent
	add := func(s, e int64) {
		if s < start {
			s = start
		}
		if e > end {
			e = end
		}
		if e <= s {
			return
		}
		if n := len(areas); n > 0 && areas[n-1].start+areas[n-1].length >= s {
			if e > areas[n-1].start+areas[n-1].length {
				areas[n-1].length = e - areas[n-1].start
			}
			return
		}
		areas = append(areas, extent{s, e - s})
	}
	for i := start / cbtBlockSize; i*cbtBlockSize < end; i++ {
		report := changed(i)
		// Over-reporting (allowed by the API): also every 16th block, and the blocks next to changed ones.
		if t.overReport && !report {
			report = i%16 == 0 || (i > 0 && changed(i-1)) || ((i+1)*cbtBlockSize < fp.capacity && changed(i+1))
		}
		if report {
			add(i*cbtBlockSize, (i+1)*cbtBlockSize)
		}
	}
	return end - start, areas, nil, ""
}

type qcdaEnvelope struct {
	Body struct {
		Req struct {
			This        string `xml:"_this"`
			Snapshot    string `xml:"snapshot"`
			DeviceKey   int32  `xml:"deviceKey"`
			StartOffset int64  `xml:"startOffset"`
			ChangeID    string `xml:"changeId"`
		} `xml:"QueryChangedDiskAreas"`
	} `xml:"Body"`
}

// ServeHTTP answers QueryChangedDiskAreas and passes everything else on (noticing ReconfigVM_Task).
func (c *cbtTracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/sdk") {
		c.next.ServeHTTP(w, r)
		return
	}
	body, ok := readSoapBody(w, r)
	if !ok {
		return
	}
	switch {
	case bytes.Contains(body, []byte("QueryChangedDiskAreas")):
		c.serveQuery(w, r, body)
	case bytes.Contains(body, []byte("ReconfigVM_Task")):
		c.next.ServeHTTP(w, r)
		c.syncEnabled()
	default:
		c.next.ServeHTTP(w, r)
	}
}

func (c *cbtTracker) serveQuery(w http.ResponseWriter, r *http.Request, body []byte) {
	var env qcdaEnvelope
	if !decodeSoap(w, r, body, &env) {
		return
	}
	req := env.Body.Req
	length, areas, fault, message := c.changedAreas(strings.TrimSpace(req.This), strings.TrimSpace(req.Snapshot), req.DeviceKey, req.StartOffset, strings.TrimSpace(req.ChangeID))
	if fault != nil {
		name := strings.TrimPrefix(fmt.Sprintf("%T", fault), "*types.")
		property := ""
		if ia, ok := fault.(*types.InvalidArgument); ok {
			property = ia.InvalidProperty
		}
		writeFault(w, name, property, message)
		return
	}
	var out strings.Builder
	out.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` +
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` +
		`<soapenv:Body><QueryChangedDiskAreasResponse xmlns="urn:vim25"><returnval>`)
	fmt.Fprintf(&out, "<startOffset>%d</startOffset><length>%d</length>", req.StartOffset, length)
	for _, a := range areas {
		fmt.Fprintf(&out, "<changedArea><start>%d</start><length>%d</length></changedArea>", a.start, a.length)
	}
	out.WriteString(`</returnval></QueryChangedDiskAreasResponse></soapenv:Body></soapenv:Envelope>`)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	_, _ = io.WriteString(w, out.String())
}

// readSoapBody reads a SOAP request's body and puts it back for the next handler; on a read error it answers 400
// and returns false.
func readSoapBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := ioutil.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	r.Body = ioutil.NopCloser(bytes.NewReader(body))
	return body, true
}

// decodeSoap unmarshals a SOAP request of a logged-in session into env; without the session cookie it answers
// NotAuthenticated, for a malformed envelope InvalidRequest, and returns false.
func decodeSoap(w http.ResponseWriter, r *http.Request, body []byte, env interface{}) bool {
	if _, err := r.Cookie("vmware_soap_session"); err != nil {
		writeFault(w, "NotAuthenticated", "", "The session is not authenticated.")
		return false
	}
	if err := xml.Unmarshal(body, env); err != nil {
		writeFault(w, "InvalidRequest", "", "malformed request: "+err.Error())
		return false
	}
	return true
}

func writeFault(w http.ResponseWriter, name, property, message string) {
	detail := fmt.Sprintf(`<%sFault xmlns="urn:vim25" xsi:type="%s">`, name, name)
	if property != "" {
		detail += "<invalidProperty>" + html.EscapeString(property) + "</invalidProperty>"
	}
	detail += fmt.Sprintf("</%sFault>", name)
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`+
		`<soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>`+html.EscapeString(message)+
		`</faultstring><detail>`+detail+`</detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>`)
}
