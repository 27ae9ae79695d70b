/**
 * libs/vsphere against a real vcsim (govmomi's simulator) holding VMs whose disks are real images.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DiskError, type Disk } from '@vmkeep/disk';
import {
  AuthenticationError,
  CertificateError,
  ConnectionError,
  connect,
  fetchThumbprint,
  NotFoundError,
  type VimSession,
  type VmInfo,
} from '@vmkeep/vsphere';
import { buildExt4Image, buildRandomZeroImage, type DiskImage } from './peers/disk-images';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

const MiB = 1024 * 1024;

describe('vSphere client against vcsim', () => {
  let work: string;
  let ext4: DiskImage;
  let mixed: DiskImage;
  let small: DiskImage;
  let sim: VcsimInstance;
  let session: VimSession;

  const options = () => ({ url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint });

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-vsphere-test-'));
    [ext4, mixed, small] = await Promise.all([
      buildExt4Image({ dir: work }),
      buildRandomZeroImage({ dir: work }),
      buildRandomZeroImage({ dir: work, seed: 'small', sizeMiB: 3 }),
    ]);
    sim = await startVcsim({
      seed: [
        { name: 'vmkeep-demo-1', powerOn: true, disks: [{ image: ext4.path }, { image: mixed.path }] },
        {
          name: 'vmkeep-layouts',
          disks: [
            { image: small.path, layout: 'flat' },
            { image: small.path, layout: 'raw' },
            { image: small.path, diskMode: 'independent_persistent' },
          ],
        },
      ],
    });
    session = await connect(options());
  });

  afterAll(async () => {
    await session?.logout();
    await sim?.stop();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  const vmNamed = async (name: string): Promise<VmInfo> => {
    const vm = (await session.inventory()).vms.find((v) => v.name === name);
    if (!vm) throw new Error(`${name} not in inventory`);
    return vm;
  };

  /** Reads a whole Disk in uneven pieces and hashes it. */
  async function hashDisk(disk: Disk, piece = 3 * MiB + 4097): Promise<string> {
    const hash = createHash('sha256');
    for (let offset = 0; offset < disk.size; offset += piece) {
      const data = await disk.read(offset, Math.min(piece, disk.size - offset));
      hash.update(data);
    }
    return hash.digest('hex');
  }

  it('connects and reports what the host is', () => {
    expect(session.about.apiType).toBe('VirtualCenter');
    expect(session.about.apiVersion).toMatch(/^\d+\.\d+/);
    expect(session.about.fullName).toContain('vCenter');
  });

  it('lists the inventory, with the seeded VM, its two disks and their capacities', async () => {
    const inventory = await session.inventory();
    expect(inventory.datacenters).toEqual([expect.objectContaining({ name: sim.datacenter, path: sim.datacenter })]);
    expect(inventory.clusters.map((c) => c.name)).toContain('DC0_C0');
    expect(inventory.hosts.filter((h) => h.cluster === 'DC0_C0')).toHaveLength(3);
    expect(inventory.datastores.map((d) => d.name)).toEqual(sim.datastores.map((d) => d.name));
    expect(inventory.datastores[0].capacity).toBeGreaterThan(0);
    // The simulator's own four VMs plus the two seeded ones.
    expect(inventory.vms.map((v) => v.name).sort()).toEqual(sim.vms.map((v) => v.name).sort());

    const vm = inventory.vms.find((v) => v.name === 'vmkeep-demo-1')!;
    const seeded = sim.vms.find((v) => v.name === 'vmkeep-demo-1')!;
    expect(vm.ref).toEqual({ type: 'VirtualMachine', value: seeded.id });
    expect(vm).toMatchObject({
      powerState: 'poweredOn',
      guestId: 'otherLinux64Guest',
      datacenter: 'DC0',
      datacenterPath: 'DC0',
      cluster: 'DC0_C0',
      snapshots: [],
    });
    expect(vm.host).toMatch(/^DC0_C0_H\d$/);
    expect(vm.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(vm.instanceUuid).toMatch(/^[0-9a-f-]{36}$/);
    expect(vm.toolsStatus).toBeDefined();
    expect(vm.disks.map((d) => [d.key, d.capacityBytes, d.datastore, d.fileName])).toEqual([
      [2000, ext4.size, 'LocalDS_0', '[LocalDS_0] vmkeep-demo-1/vmkeep-demo-1_0.vmdk'],
      [2001, mixed.size, 'LocalDS_0', '[LocalDS_0] vmkeep-demo-1/vmkeep-demo-1_1.vmdk'],
    ]);
    expect(vm.disks.every((d) => d.skipReason === undefined)).toBe(true);
  });

  it('gets one VM by id, and says NotFound for an unknown one', async () => {
    const listed = await vmNamed('vmkeep-demo-1');
    const vm = await session.getVm(listed.ref.value);
    expect(vm).toEqual(listed);
    await expect(session.getVm('vm-424242')).rejects.toThrow(NotFoundError);
    await expect(session.getVm('vm-424242')).rejects.toThrow('VM vm-424242 not found');
    await expect(session.createSnapshot('vm-424242', 'x', '', false)).rejects.toThrow(NotFoundError);
  });

  it.each([true, false])('creates (quiesce %s), lists, inspects and removes a snapshot', async (quiesce) => {
    const vm = await vmNamed('vmkeep-demo-1');
    const name = `vmkeep-${quiesce ? 'quiesced' : 'crash'}-${Date.now()}`;
    const snapshot = await session.createSnapshot(vm.ref.value, name, 'test snapshot', quiesce);
    expect(snapshot.type).toBe('VirtualMachineSnapshot');

    const withSnapshot = await session.getVm(vm.ref.value);
    expect(withSnapshot.snapshots).toEqual([{ ref: snapshot, name, description: 'test snapshot' }]);

    const disks = await session.snapshotDisks(snapshot);
    expect(disks.map((d) => [d.key, d.capacityBytes, d.fileName])).toEqual(vm.disks.map((d) => [d.key, d.capacityBytes, d.fileName]));

    await session.removeSnapshot(snapshot);
    expect((await session.getVm(vm.ref.value)).snapshots).toEqual([]);
    await expect(session.snapshotDisks(snapshot)).rejects.toThrow(NotFoundError);
  });

  it('reads both disks byte-exact through /folder, including unaligned ranges', async () => {
    const vm = await vmNamed('vmkeep-demo-1');
    const images = [ext4, mixed];
    for (const [index, info] of vm.disks.entries()) {
      const disk = await session.openDisk(vm.datacenterPath, info);
      try {
        expect(disk.size).toBe(images[index].size);
        expect(await disk.extents()).toEqual([{ offset: 0, length: disk.size }]);
        expect(await hashDisk(disk)).toBe(images[index].sha256);

        const local = await fs.readFile(images[index].path);
        for (const [offset, length] of [
          [1, 1],
          [511, 1025],
          [MiB - 3, 7],
          [5 * MiB + 12345, 2 * MiB + 3],
          [disk.size - 10, 10],
          [0, 0],
        ]) {
          expect((await disk.read(offset, length)).equals(local.subarray(offset, offset + length))).toBe(true);
        }
        await expect(disk.read(disk.size - 1, 2)).rejects.toThrow(DiskError);
      } finally {
        await disk.close();
      }
    }
  });

  it('reads monolithicFlat and raw layouts, and marks independent disks', async () => {
    const vm = await vmNamed('vmkeep-layouts');
    expect(vm.disks).toHaveLength(3);
    for (const info of vm.disks.slice(0, 2)) {
      expect(info.skipReason).toBeUndefined();
      const disk = await session.openDisk(vm.datacenterPath, info);
      expect(await hashDisk(disk, MiB - 1)).toBe(small.sha256);
      await disk.close();
    }
    expect(vm.disks[2].diskMode).toBe('independent_persistent');
    expect(vm.disks[2].skipReason).toMatch(/independent/);
  });

  it('refuses a disk whose data file is shorter than its capacity, or that is missing', async () => {
    const vm = await vmNamed('vmkeep-demo-1');
    const disk = vm.disks[0];
    const bigger = (d: typeof disk) => ({ ...d, capacityBytes: d.capacityBytes + 1024 });
    await expect(session.openDisk(vm.datacenterPath, bigger(disk))).rejects.toThrow(/extent holds \d+ bytes, less than the disk capacity/);
    const raw = (await vmNamed('vmkeep-layouts')).disks[1];
    await expect(session.openDisk(vm.datacenterPath, bigger(raw))).rejects.toThrow(/data file holds \d+ bytes, less than offset 0 \+ capacity/);
    const missing = { ...disk, fileName: '[LocalDS_0] vmkeep-demo-1/nope.vmdk' };
    await expect(session.openDisk(vm.datacenterPath, missing)).rejects.toThrow(/HTTP 404/);
  });

  it('refuses a wrong password with AuthenticationError that does not echo it', async () => {
    const error = await connect({ ...options(), password: 'Wrong-Password-123' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toContain(sim.username);
    expect((error as Error).message).not.toContain('Wrong-Password-123');
  });

  it('reports an unreachable host as ConnectionError naming the host', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));
    const error = await connect({ ...options(), url: `https://127.0.0.1:${port}` }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toContain('127.0.0.1');
    expect((error as Error).message).not.toContain(sim.password);
  });

  it('times out on a host that accepts connections but never answers', async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const started = Date.now();
      const error = await connect({ ...options(), url: `https://127.0.0.1:${port}`, timeoutMs: 300 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as Error).message).toMatch(/timed out/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      silent.close();
    }
  });

  it('fails a read with DiskError once the host is gone (after retrying)', async () => {
    const doomed = await startVcsim({ seed: [{ name: 'short-lived', disks: [{ image: small.path }] }] });
    const client = await connect({ url: doomed.url, username: doomed.username, password: doomed.password, insecure: true, disk: { retries: 2, retryBaseMs: 10 } });
    try {
      const vm = (await client.inventory()).vms.find((v) => v.name === 'short-lived')!;
      const disk = await client.openDisk(vm.datacenterPath, vm.disks[0]);
      expect((await disk.read(0, 4096)).length).toBe(4096);
      doomed.kill();
      const error = await disk.read(MiB, 4096).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DiskError);
      expect((error as DiskError).offset).toBe(MiB);
      expect((error as Error).message).toMatch(/short-lived_0\.vmdk.*after 3 attempts: cannot reach 127\.0\.0\.1/);
    } finally {
      await client.logout();
      await doomed.stop();
    }
  });

  describe('TLS', () => {
    it('refuses the untrusted self-signed certificate by default, telling its thumbprint', async () => {
      const error = await connect({ url: sim.url, username: sim.username, password: sim.password }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CertificateError);
      expect((error as CertificateError).presentedThumbprint).toBe(sim.thumbprint);
      expect((error as Error).message).toContain(sim.thumbprint);
    });

    it('accepts anything when insecure', async () => {
      const insecure = await connect({ url: sim.url, username: sim.username, password: sim.password, insecure: true });
      expect(insecure.about.apiType).toBe('VirtualCenter');
      await insecure.logout();
    });

    it('accepts the pinned thumbprint, written in any case and with or without colons', async () => {
      const pinned = await connect({ ...options(), thumbprint: sim.thumbprint.replace(/:/g, '').toLowerCase() });
      const vm = (await pinned.inventory()).vms.find((v) => v.name === 'vmkeep-demo-1')!;
      const disk = await pinned.openDisk(vm.datacenterPath, vm.disks[0]);
      expect((await disk.read(1024, 2)).length).toBe(2);
      await pinned.logout();
    });

    it('refuses a wrong pinned thumbprint', async () => {
      const wrong = createHash('sha256').update('another certificate').digest('hex');
      const error = await connect({ ...options(), thumbprint: wrong }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CertificateError);
      expect((error as CertificateError).presentedThumbprint).toBe(sim.thumbprint);
    });

    it('fetches the presented thumbprint for an admin to pin', async () => {
      expect(await fetchThumbprint(sim.url)).toBe(sim.thumbprint);
    });
  });

  it('logs in again by itself when the session is terminated behind its back', async () => {
    const victim = await connect(options());
    const admin = await connect(options());
    try {
      const before = victim.sessionKey!;
      expect(before).toBeTruthy();
      await admin.terminateSessions([before]);

      const inventory = await victim.inventory();
      expect(inventory.vms.some((v) => v.name === 'vmkeep-demo-1')).toBe(true);
      expect(victim.sessionKey).toBeTruthy();
      expect(victim.sessionKey).not.toBe(before);
      // Still one working session afterwards: a snapshot round trip.
      const vm = inventory.vms.find((v) => v.name === 'vmkeep-demo-1')!;
      const snapshot = await victim.createSnapshot(vm.ref.value, 'after-relogin', '', false);
      await victim.removeSnapshot(snapshot);
    } finally {
      await victim.logout();
      await admin.logout();
    }
  });
});
