// Full VM restore (libs/restore/src/vm) against vcsim: a seeded VM with two disks of real data and a NIC is
// rebuilt under a new name from its disks and captured configuration; the flat files in vcsim's datastore
// folder are byte-exact and the new VM's configuration matches. Overwriting the original is refused without
// the flag and byte-exact with it. A connection cut mid-upload fails the restore and leaves no VM and no file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openRaw } from '@vmkeep/disk-formats';
import { restoreVm, VmRestoreError, type RestoreDiskSource } from '@vmkeep/restore';
import { connect, nicDevice, type VimSession, type VmConfig } from '@vmkeep/vsphere';
import { buildRandomZeroImage, sha256File, type DiskImage } from './peers/disk-images';
import { startTcpProxy, viaProxy, type TcpProxy } from './peers/tcp-proxy';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const VM_NAME = 'restore-source';

let work: string;
let vcsim: VcsimInstance;
let images: DiskImage[];
let session: VimSession;
let config: VmConfig;

function sources(list: DiskImage[] = images): RestoreDiskSource[] {
  return config.disks.map((disk, index) => ({ deviceKey: disk.key, open: () => openRaw(list[index].path) }));
}

function sourceVmId(): string {
  return vcsim.vms.find((vm) => vm.name === VM_NAME)!.id;
}

function datastoreDir(): string {
  return vcsim.datastores[0].path;
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-e2e-restore-vm-'));
  images = [
    await buildRandomZeroImage({ dir: work, sizeMiB: 6, seed: 'restore-a' }),
    await buildRandomZeroImage({ dir: work, sizeMiB: 4, seed: 'restore-b' }),
  ];
  vcsim = await startVcsim({ seed: [{ name: VM_NAME, disks: images.map((image) => ({ image: image.path })) }] });
  session = await connect({ url: vcsim.url, username: vcsim.username, password: vcsim.password, thumbprint: vcsim.thumbprint });
  // Give the seeded VM a NIC on the simulator's "VM Network".
  const vmId = sourceVmId();
  const network = (await session.placementTargets()).networks.find((n) => n.name === 'VM Network')!;
  const nic = { key: -1, type: 'VirtualVmxnet3', network: 'VM Network', startConnected: true };
  await session.reconfigureVm(vmId, { numCPUs: 2, memoryMB: 1024, deviceChange: [{ operation: 'add', device: nicDevice(nic, -1, network.ref) }] });
  config = await session.vmConfig(vmId);
}, 120_000);

afterAll(async () => {
  await session?.logout();
  await vcsim?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

it('captures the VM configuration', () => {
  expect(config).toMatchObject({ name: VM_NAME, guestId: 'otherLinux64Guest', numCPUs: 2, memoryMB: 1024 });
  expect(config.controllers.map((c) => c.type)).toContain('VirtualLsiLogicController');
  expect(config.disks.map((d) => d.capacityBytes)).toEqual(images.map((i) => i.size));
  expect(config.nics).toEqual([expect.objectContaining({ type: 'VirtualVmxnet3', network: 'VM Network' })]);
});

it('restores the VM under a new name: byte-exact flat files and the same configuration', async () => {
  const progress: number[] = [];
  const result = await restoreVm(session, config, sources(), { name: 'restored-1', thin: true }, {
    onProgress: (p) => progress.push(p.bytesDone),
  });
  expect(result.disks).toEqual(['[LocalDS_0] restored-1/restored-1_0.vmdk', '[LocalDS_0] restored-1/restored-1_1.vmdk'].map((d) => d.replace('LocalDS_0', vcsim.datastores[0].name)));
  expect(progress.at(-1)).toBe(images[0].size + images[1].size);
  for (const [index, image] of images.entries()) {
    const flat = path.join(datastoreDir(), 'restored-1', `restored-1_${index}-flat.vmdk`);
    expect(await sha256File(flat)).toBe(image.sha256);
    const descriptor = fs.readFileSync(path.join(datastoreDir(), 'restored-1', `restored-1_${index}.vmdk`), 'utf8');
    expect(descriptor).toContain(`RW ${image.size / 512} VMFS "restored-1_${index}-flat.vmdk"`);
  }
  const restored = await session.vmConfig(result.vmId);
  expect(restored).toMatchObject({ name: 'restored-1', guestId: config.guestId, numCPUs: 2, memoryMB: 1024 });
  expect(restored.disks.map((d) => [d.capacityBytes, d.thin])).toEqual(images.map((i) => [i.size, true]));
  expect(restored.nics.map((n) => [n.type, n.network])).toEqual([['VirtualVmxnet3', 'VM Network']]);
});

it('refuses a name collision and an unknown datastore before any data moves', async () => {
  await expect(restoreVm(session, config, sources(), { name: VM_NAME })).rejects.toThrow(/already exists/);
  await expect(restoreVm(session, config, sources(), { name: 'x', datastore: 'nope' })).rejects.toThrow(VmRestoreError);
  expect(fs.existsSync(path.join(datastoreDir(), 'x'))).toBe(false);
});

it('overwrites the original only when asked, byte-exact, keeping its identity', async () => {
  const vmId = sourceVmId();
  const other = [
    await buildRandomZeroImage({ dir: work, sizeMiB: 6, seed: 'overwrite-a' }),
    await buildRandomZeroImage({ dir: work, sizeMiB: 4, seed: 'overwrite-b' }),
  ];
  await expect(restoreVm(session, config, sources(other), { mode: 'overwrite' })).rejects.toThrow(/needs its id/);
  const result = await restoreVm(session, config, sources(other), { mode: 'overwrite', originalVmId: vmId });
  expect(result.vmId).toBe(vmId);
  const after = await session.vmConfig(vmId);
  expect(after.disks.map((d) => d.key)).toEqual(config.disks.map((d) => d.key));
  expect(after.nics).toEqual(config.nics);
  for (const [index, disk] of after.disks.entries()) {
    const rel = disk.fileName.replace(/^\[[^\]]+\]\s*/, '').replace(/\.vmdk$/, '-flat.vmdk');
    expect(await sha256File(path.join(datastoreDir(), rel))).toBe(other[index].sha256);
  }
});

describe('a connection cut mid-upload', () => {
  let proxy: TcpProxy;
  let cut: VimSession;

  beforeAll(async () => {
    const target = new URL(vcsim.url);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
    cut = await connect({ url: viaProxy(vcsim.url, proxy), username: vcsim.username, password: vcsim.password, insecure: true });
  });
  afterAll(async () => {
    await cut?.logout();
    await proxy?.close();
  });

  it('fails the restore and leaves no VM and no partial file', async () => {
    const before = (await session.inventory()).vms.length;
    let cutDone = false;
    const restore = restoreVm(cut, config, sources(), { name: 'restored-cut' }, {
      onProgress: (p) => {
        if (!cutDone && p.bytesDone > 2 * 1024 * 1024) {
          cutDone = true;
          // The host drops off the network for a moment: the upload breaks, the cleanup gets through later.
          proxy.cut();
          setTimeout(() => proxy.restore(), 300);
        }
      },
    });
    await expect(restore).rejects.toThrow();
    expect(cutDone).toBe(true);
    expect(fs.existsSync(path.join(datastoreDir(), 'restored-cut'))).toBe(false);
    expect((await session.inventory()).vms.length).toBe(before);
  });
});
