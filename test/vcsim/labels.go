// Inventory labels for policy selection tests: with the -seed file's "labels" list, VMs (seeded or built in)
// are moved into VM folders and resource pools, tagged through the vAPI tagging REST endpoints and given custom
// attributes through the CustomFieldsManager — the same calls an admin's tooling makes against vCenter.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"net/url"
	"strings"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vapi/rest"
	_ "github.com/vmware/govmomi/vapi/simulator" // serves /rest/com/vmware/cis/... on the simulator
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/types"
)

type labelTag struct {
	Category string `json:"category"`
	Name     string `json:"name"`
}

// vmLabels places and labels one VM, found by name.
type vmLabels struct {
	VM string `json:"vm"`
	// Folder below the datacenter's VM folder, e.g. "prod/web" (created as needed).
	Folder string `json:"folder"`
	// Pool is a child resource pool of the first cluster's root pool (created as needed).
	Pool       string            `json:"pool"`
	Tags       []labelTag        `json:"tags"`
	Attributes map[string]string `json:"attributes"`
}

type labelSeed struct {
	Labels []vmLabels `json:"labels"`
}

// applyLabels reads the "labels" list of the seed file (if any) and applies it.
func applyLabels(ctx context.Context, client *govmomi.Client, serverURL *url.URL, seedPath string) error {
	if seedPath == "" {
		return nil
	}
	data, err := ioutil.ReadFile(seedPath)
	if err != nil {
		return err
	}
	var seed labelSeed
	if err = json.Unmarshal(data, &seed); err != nil {
		return fmt.Errorf("seed %s: %w", seedPath, err)
	}
	if len(seed.Labels) == 0 {
		return nil
	}
	l := &labeller{ctx: ctx, client: client, folders: map[string]*object.Folder{}, pools: map[string]*object.ResourcePool{},
		categories: map[string]string{}, tagIDs: map[string]string{}, fields: map[string]int32{}}
	l.finder = find.NewFinder(client.Client, false)
	dc, err := l.finder.DefaultDatacenter(ctx)
	if err != nil {
		return err
	}
	l.finder.SetDatacenter(dc)
	if l.dcFolders, err = dc.Folders(ctx); err != nil {
		return err
	}
	rc := rest.NewClient(client.Client)
	if err = rc.Login(ctx, serverURL.User); err != nil {
		return fmt.Errorf("vAPI login: %w", err)
	}
	defer func() { _ = rc.Logout(ctx) }()
	l.tags = tags.NewManager(rc)
	if l.fieldsManager, err = object.GetCustomFieldsManager(client.Client); err != nil {
		return err
	}
	for _, entry := range seed.Labels {
		if err = l.apply(entry); err != nil {
			return fmt.Errorf("labels of VM %q: %w", entry.VM, err)
		}
	}
	return nil
}

type labeller struct {
	ctx           context.Context
	client        *govmomi.Client
	finder        *find.Finder
	dcFolders     *object.DatacenterFolders
	tags          *tags.Manager
	fieldsManager *object.CustomFieldsManager
	folders       map[string]*object.Folder
	pools         map[string]*object.ResourcePool
	categories    map[string]string
	tagIDs        map[string]string
	fields        map[string]int32
}

func (l *labeller) apply(entry vmLabels) error {
	vm, err := l.finder.VirtualMachine(l.ctx, entry.VM)
	if err != nil {
		return err
	}
	var spec types.VirtualMachineRelocateSpec
	if entry.Folder != "" {
		folder, err := l.folder(entry.Folder)
		if err != nil {
			return err
		}
		ref := folder.Reference()
		spec.Folder = &ref
	}
	if entry.Pool != "" {
		pool, err := l.pool(entry.Pool)
		if err != nil {
			return err
		}
		ref := pool.Reference()
		spec.Pool = &ref
	}
	if spec.Folder != nil || spec.Pool != nil {
		task, err := vm.Relocate(l.ctx, spec, types.VirtualMachineMovePriorityDefaultPriority)
		if err != nil {
			return err
		}
		if err = task.Wait(l.ctx); err != nil {
			return err
		}
	}
	for _, t := range entry.Tags {
		id, err := l.tag(t)
		if err != nil {
			return err
		}
		if err = l.tags.AttachTag(l.ctx, id, vm.Reference()); err != nil {
			return err
		}
	}
	for name, value := range entry.Attributes {
		key, err := l.field(name)
		if err != nil {
			return err
		}
		if err = l.fieldsManager.Set(l.ctx, vm.Reference(), key, value); err != nil {
			return err
		}
	}
	return nil
}

func (l *labeller) folder(p string) (*object.Folder, error) {
	current := l.dcFolders.VmFolder
	walked := ""
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		walked += "/" + name
		if f, ok := l.folders[walked]; ok {
			current = f
			continue
		}
		f, err := current.CreateFolder(l.ctx, name)
		if err != nil {
			return nil, err
		}
		l.folders[walked] = f
		current = f
	}
	return current, nil
}

func (l *labeller) pool(name string) (*object.ResourcePool, error) {
	if p, ok := l.pools[name]; ok {
		return p, nil
	}
	clusters, err := l.finder.ClusterComputeResourceList(l.ctx, "*")
	if err != nil {
		return nil, err
	}
	root, err := clusters[0].ResourcePool(l.ctx)
	if err != nil {
		return nil, err
	}
	p, err := root.Create(l.ctx, name, types.DefaultResourceConfigSpec())
	if err != nil {
		return nil, err
	}
	l.pools[name] = p
	return p, nil
}

func (l *labeller) tag(t labelTag) (string, error) {
	key := t.Category + "\x00" + t.Name
	if id, ok := l.tagIDs[key]; ok {
		return id, nil
	}
	categoryID, ok := l.categories[t.Category]
	if !ok {
		var err error
		categoryID, err = l.tags.CreateCategory(l.ctx, &tags.Category{Name: t.Category, Cardinality: "MULTIPLE", AssociableTypes: []string{"VirtualMachine"}})
		if err != nil {
			return "", err
		}
		l.categories[t.Category] = categoryID
	}
	id, err := l.tags.CreateTag(l.ctx, &tags.Tag{Name: t.Name, CategoryID: categoryID})
	if err != nil {
		return "", err
	}
	l.tagIDs[key] = id
	return id, nil
}

func (l *labeller) field(name string) (int32, error) {
	if key, ok := l.fields[name]; ok {
		return key, nil
	}
	def, err := l.fieldsManager.Add(l.ctx, name, "VirtualMachine", nil, nil)
	if err != nil {
		return 0, err
	}
	l.fields[name] = def.Key
	return def.Key, nil
}
