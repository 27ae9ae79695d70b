// Command vcsim starts govmomi's vCenter simulator for VMKeep's tests.
//
// It serves a VPX inventory (DC0 with cluster DC0_C0, hosts and datastore LocalDS_0 backed by a folder under
// -dir) over HTTPS on 127.0.0.1 with a fresh self-signed certificate, accepts only the given credentials,
// optionally adds VMs whose disks hold real data (-seed, a JSON file), and prints one JSON line on stdout when
// ready. It runs until SIGINT/SIGTERM, then removes the datastore folders it created.
//
// cbt.go adds changed block tracking (changeIds on snapshot disks, QueryChangedDiskAreas).
// guestops.go adds guest file operations (MakeDirectoryInGuest, ListFilesInGuest, InitiateFileTransferToGuest).
// labels.go moves VMs into folders and resource pools, tags them and sets custom attributes (seed "labels").
//
// Build offline: GOPATH=/usr/share/gocode GO111MODULE=off go build -o vcsim .
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// seedFile is the -seed JSON: VMs to add, each disk given as a raw image on the local file system.
type seedFile struct {
	VMs []seedVM `json:"vms"`
}

type seedVM struct {
	Name    string     `json:"name"`
	PowerOn bool       `json:"powerOn"`
	Disks   []seedDisk `json:"disks"`
	// CbtOverReport makes QueryChangedDiskAreas report areas that did not change too (allowed by the API).
	CbtOverReport bool `json:"cbtOverReport"`
	// CbtPageBytes is how much of the disk one QueryChangedDiskAreas answer covers (default 64 MiB).
	CbtPageBytes int64 `json:"cbtPageBytes"`
	// Guest gives the VM running Tools and a guest file system for guest operations (guestops.go).
	Guest *seedGuest `json:"guest"`
}

type seedDisk struct {
	Image string `json:"image"`
	// Layout: "vmfs" (default; ESXi descriptor + VMFS extent x-flat.vmdk), "flat" (monolithicFlat descriptor,
	// FLAT extent at offset 0) or "raw" (the image itself, no descriptor).
	Layout string `json:"layout"`
	// DiskMode defaults to "persistent".
	DiskMode string `json:"diskMode"`
}

type readyDisk struct {
	Key       int32  `json:"key"`
	Label     string `json:"label"`
	FileName  string `json:"fileName"`
	Capacity  int64  `json:"capacityBytes"`
	LocalPath string `json:"localPath"`
}

type readyVM struct {
	ID    string      `json:"id"`
	Name  string      `json:"name"`
	Disks []readyDisk `json:"disks"`
}

type readyDatastore struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

type ready struct {
	URL         string           `json:"url"`
	Username    string           `json:"username"`
	Password    string           `json:"password"`
	Thumbprint  string           `json:"thumbprint"`
	Datacenter  string           `json:"datacenter"`
	Datastores  []readyDatastore `json:"datastores"`
	VMs         []readyVM        `json:"vms"`
	Pid         int              `json:"pid"`
	SeededNames []string         `json:"seeded"`
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1 (0 = pick a free one)")
	dir := flag.String("dir", "", "working folder; datastore folders are created inside it")
	username := flag.String("username", "user", "the only accepted user name")
	password := flag.String("password", "pass", "the only accepted password")
	seedPath := flag.String("seed", "", "JSON file describing VMs with real disk images to add")
	flag.Parse()

	if *dir == "" {
		log.Fatal("-dir is required")
	}
	if *username == "" || *password == "" {
		log.Fatal("-username and -password must not be empty")
	}
	// The simulator creates its datastore folders with ioutil.TempDir(""), i.e. under $TMPDIR.
	if err := os.Setenv("TMPDIR", *dir); err != nil {
		log.Fatal(err)
	}

	var seed seedFile
	if *seedPath != "" {
		data, err := ioutil.ReadFile(*seedPath)
		if err != nil {
			log.Fatal(err)
		}
		if err = json.Unmarshal(data, &seed); err != nil {
			log.Fatalf("seed %s: %s", *seedPath, err)
		}
	}

	model := simulator.VPX()
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()

	cert, fingerprint, err := selfSignedCertificate()
	if err != nil {
		log.Fatal(err)
	}
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.Listen = &url.URL{
		Host: net.JoinHostPort("127.0.0.1", fmt.Sprint(*port)),
		User: url.UserPassword(*username, *password),
	}
	model.Service.RegisterEndpoints = true // the vAPI REST endpoints (tagging) that labels.go imports
	server := model.Service.NewServer()
	defer server.Close()

	ctx := context.Background()
	client, err := govmomi.NewClient(ctx, server.URL, true)
	if err != nil {
		log.Fatal(err)
	}

	info, err := seedAndDescribe(ctx, client, seed)
	if err != nil {
		log.Fatal(err)
	}
	if err = applyLabels(ctx, client, server.URL, *seedPath); err != nil { // labels.go
		log.Fatal(err)
	}
	_ = client.Logout(ctx)

	// Changed block tracking (cbt.go): every VM supports it, off until a ReconfigVM_Task turns it on.
	tracker := newCbtTracker(info.Datastores)
	for _, entry := range info.VMs {
		if vm, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "VirtualMachine", Value: entry.ID}).(*simulator.VirtualMachine); ok {
			vm.Capability.ChangeTrackingSupported = types.NewBool(true)
			vm.Config.ChangeTrackingEnabled = types.NewBool(false)
		}
		tracker.configure(entry.ID, false, 0)
		for _, s := range seed.VMs {
			if s.Name == entry.Name {
				tracker.configure(entry.ID, s.CbtOverReport, s.CbtPageBytes)
			}
		}
	}
	simulator.Map.AddHandler(tracker)
	tracker.next = server.Config.Handler
	server.Config.Handler = tracker

	// Guest file operations (guestops.go) for seeded VMs with a "guest" entry.
	guest := newGuestOps()
	for _, entry := range info.VMs {
		for _, s := range seed.VMs {
			if s.Name == entry.Name && s.Guest != nil {
				if err := guest.enable(*dir, entry.ID, *s.Guest); err != nil {
					log.Fatal(err)
				}
			}
		}
	}
	guest.next = server.Config.Handler
	server.Config.Handler = guest

	base := *server.URL
	base.User = nil
	base.Path = ""
	info.URL = base.String()
	info.Username = *username
	info.Password = *password
	info.Thumbprint = fingerprint
	info.Pid = os.Getpid()

	line, err := json.Marshal(info)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}

// selfSignedCertificate makes an ECDSA certificate for 127.0.0.1 and returns it with its SHA-256 fingerprint
// (upper-case hex pairs separated by colons, as browsers and vCenter show it).
func selfSignedCertificate() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	template := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vmkeep-vcsim", Organization: []string{"VMKeep tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	pairs := make([]string, len(sum))
	for i, b := range sum {
		pairs[i] = strings.ToUpper(hex.EncodeToString([]byte{b}))
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, strings.Join(pairs, ":"), nil
}

func seedAndDescribe(ctx context.Context, client *govmomi.Client, seed seedFile) (*ready, error) {
	finder := find.NewFinder(client.Client, false)
	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return nil, err
	}
	finder.SetDatacenter(dc)

	datastores, err := finder.DatastoreList(ctx, "*")
	if err != nil {
		return nil, err
	}
	info := &ready{Datacenter: dc.Name()}
	for _, ds := range datastores {
		var props mo.Datastore
		if err = ds.Properties(ctx, ds.Reference(), []string{"info"}, &props); err != nil {
			return nil, err
		}
		info.Datastores = append(info.Datastores, readyDatastore{Name: ds.Name(), Path: props.Info.GetDatastoreInfo().Url})
	}
	if len(info.Datastores) == 0 {
		return nil, fmt.Errorf("the model has no datastore")
	}

	for _, vm := range seed.VMs {
		if err = createSeededVM(ctx, client, finder, info.Datastores[0], datastores[0], vm); err != nil {
			return nil, fmt.Errorf("seed VM %q: %w", vm.Name, err)
		}
		info.SeededNames = append(info.SeededNames, vm.Name)
	}

	vms, err := finder.VirtualMachineList(ctx, "*")
	if err != nil {
		return nil, err
	}
	for _, vm := range vms {
		var props mo.VirtualMachine
		if err = vm.Properties(ctx, vm.Reference(), []string{"name", "config.hardware.device"}, &props); err != nil {
			return nil, err
		}
		entry := readyVM{ID: vm.Reference().Value, Name: props.Name, Disks: []readyDisk{}}
		for _, device := range props.Config.Hardware.Device {
			disk, ok := device.(*types.VirtualDisk)
			if !ok {
				continue
			}
			file := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName
			entry.Disks = append(entry.Disks, readyDisk{
				Key:       disk.Key,
				Label:     disk.DeviceInfo.GetDescription().Label,
				FileName:  file,
				Capacity:  diskCapacity(disk),
				LocalPath: localPath(info.Datastores, file),
			})
		}
		info.VMs = append(info.VMs, entry)
	}
	return info, nil
}

func diskCapacity(disk *types.VirtualDisk) int64 {
	if disk.CapacityInBytes > 0 {
		return disk.CapacityInBytes
	}
	return disk.CapacityInKB * 1024
}

// localPath maps "[ds] dir/file.vmdk" to the file in the datastore's local folder.
func localPath(datastores []readyDatastore, fileName string) string {
	var p object.DatastorePath
	if !p.FromString(fileName) {
		return ""
	}
	for _, ds := range datastores {
		if ds.Name == p.Datastore {
			return filepath.Join(ds.Path, filepath.FromSlash(p.Path))
		}
	}
	return ""
}

// createSeededVM writes the disk files into the datastore folder, then creates the VM attaching them.
func createSeededVM(ctx context.Context, client *govmomi.Client, finder *find.Finder, dsInfo readyDatastore, ds *object.Datastore, vm seedVM) error {
	if vm.Name == "" || strings.ContainsAny(vm.Name, "/[]") {
		return fmt.Errorf("invalid VM name")
	}
	vmDir := filepath.Join(dsInfo.Path, vm.Name)
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		return err
	}

	var devices object.VirtualDeviceList
	controller, err := devices.CreateSCSIController("lsilogic")
	if err != nil {
		return err
	}
	controller.GetVirtualDevice().Key = 1000
	devices = append(devices, controller)
	for i, disk := range vm.Disks {
		size, fileName, err := writeDiskFiles(vmDir, fmt.Sprintf("%s_%d", vm.Name, i), disk)
		if err != nil {
			return err
		}
		mode := disk.DiskMode
		if mode == "" {
			mode = string(types.VirtualDiskModePersistent)
		}
		dsRef := ds.Reference()
		device := &types.VirtualDisk{
			VirtualDevice: types.VirtualDevice{
				Key: int32(2000 + i), // as ESXi numbers disks
				Backing: &types.VirtualDiskFlatVer2BackingInfo{
					DiskMode:        mode,
					ThinProvisioned: types.NewBool(false),
					VirtualDeviceFileBackingInfo: types.VirtualDeviceFileBackingInfo{
						FileName:  fmt.Sprintf("[%s] %s", dsInfo.Name, path.Join(vm.Name, fileName)),
						Datastore: &dsRef,
					},
				},
			},
			CapacityInKB:    size / 1024,
			CapacityInBytes: size,
		}
		devices.AssignController(device, controller.(types.BaseVirtualController))
		devices = append(devices, device)
	}

	// Attach the existing files: no file operation (govmomi's ConfigSpec helper would ask to create them).
	var changes []types.BaseVirtualDeviceConfigSpec
	for _, device := range devices {
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: device})
	}
	spec := types.VirtualMachineConfigSpec{
		Name:         vm.Name,
		GuestId:      "otherLinux64Guest",
		NumCPUs:      1,
		MemoryMB:     512,
		Files:        &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s] %s/%s.vmx", dsInfo.Name, vm.Name, vm.Name)},
		DeviceChange: changes,
	}

	dc, err := finder.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	dcFolders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	clusters, err := finder.ClusterComputeResourceList(ctx, "*")
	if err != nil {
		return err
	}
	pool, err := clusters[0].ResourcePool(ctx)
	if err != nil {
		return err
	}

	task, err := dcFolders.VmFolder.CreateVM(ctx, spec, pool, nil)
	if err != nil {
		return err
	}
	result, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return err
	}
	if vm.PowerOn {
		created := object.NewVirtualMachine(client.Client, result.Result.(types.ManagedObjectReference))
		powerOn, err := created.PowerOn(ctx)
		if err != nil {
			return err
		}
		return powerOn.Wait(ctx)
	}
	return nil
}

// writeDiskFiles copies the image into the VM folder in the requested layout and returns the image size and
// the file name the VM's disk backing points at.
func writeDiskFiles(vmDir, base string, disk seedDisk) (int64, string, error) {
	layout := disk.Layout
	if layout == "" {
		layout = "vmfs"
	}
	var dataName, backingName string
	switch layout {
	case "vmfs", "flat":
		dataName, backingName = base+"-flat.vmdk", base+".vmdk"
	case "raw":
		dataName, backingName = base+".img", base+".img"
	default:
		return 0, "", fmt.Errorf("unknown disk layout %q", layout)
	}
	size, err := copyFile(disk.Image, filepath.Join(vmDir, dataName))
	if err != nil {
		return 0, "", err
	}
	if size == 0 || size%1024 != 0 {
		return 0, "", fmt.Errorf("image %s: size %d is not a positive multiple of 1024", disk.Image, size)
	}
	if layout != "raw" {
		descriptor := descriptorText(layout, dataName, size)
		if err = ioutil.WriteFile(filepath.Join(vmDir, backingName), []byte(descriptor), 0o644); err != nil {
			return 0, "", err
		}
	}
	return size, backingName, nil
}

func descriptorText(layout, extent string, size int64) string {
	createType, extentLine := "vmfs", fmt.Sprintf("RW %d VMFS \"%s\"", size/512, extent)
	if layout == "flat" {
		createType, extentLine = "monolithicFlat", fmt.Sprintf("RW %d FLAT \"%s\" 0", size/512, extent)
	}
	cylinders := size / 512 / (255 * 63)
	if cylinders == 0 {
		cylinders = 1
	}
	return strings.Join([]string{
		"# Disk DescriptorFile",
		"version=1",
		"encoding=\"UTF-8\"",
		"CID=fffffffe",
		"parentCID=ffffffff",
		"createType=\"" + createType + "\"",
		"",
		"# Extent description",
		extentLine,
		"",
		"# The Disk Data Base",
		"#DDB",
		"",
		"ddb.adapterType = \"lsilogic\"",
		fmt.Sprintf("ddb.geometry.cylinders = \"%d\"", cylinders),
		"ddb.geometry.heads = \"255\"",
		"ddb.geometry.sectors = \"63\"",
		"ddb.thinProvisioned = \"0\"",
		"ddb.virtualHWVersion = \"13\"",
		"",
	}, "\n")
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if closeErr := out.Close(); err == nil {
		err = closeErr
	}
	return n, err
}
