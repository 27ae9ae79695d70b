import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Test, TestingModule } from '@nestjs/testing';
import { DataSource } from 'typeorm';
import { APP_CONFIG, ConfigModule, loadConfig } from '@vmkeep/config';
import { HostEntity, PersistenceModule, VmDiskEntity, VmEntity } from '@vmkeep/persistence';
import {
  AuthenticationError,
  CertificateError,
  ConnectionError,
  type ConnectOptions,
  type Inventory,
  type VmInfo,
  type VsphereSession,
} from '@vmkeep/vsphere';
import { HostConnectionError } from './errors';
import { HostsService } from './hosts.service';
import { InventoryModule } from './inventory.module';
import { VSPHERE_CLIENT, type VsphereClient } from './vsphere-client';

/** A stand-in vCenter: the real one is exercised by the e2e suite against vcsim. */
class FakeVsphere implements VsphereClient {
  vms: VmInfo[] = [];
  failure?: Error;
  logins: ConnectOptions[] = [];
  logouts = 0;

  async connect(options: ConnectOptions): Promise<VsphereSession> {
    this.logins.push(options);
    if (this.failure) throw this.failure;
    const about = { apiType: 'VirtualCenter', apiVersion: '8.0.2.0', fullName: 'Fake vCenter 8' };
    const inventory: Inventory = { about, datacenters: [], clusters: [], hosts: [], datastores: [], vms: this.vms };
    const unused = (): never => {
      throw new Error('not used by inventory');
    };
    return {
      about,
      inventory: async () => inventory,
      getVm: unused,
      createSnapshot: unused,
      removeSnapshot: unused,
      snapshotDisks: unused,
      openDisk: unused,
      logout: async () => {
        this.logouts++;
      },
    };
  }

  async fetchThumbprint(): Promise<string> {
    return 'AB:CD';
  }
}

function vm(moref: string, name: string, disks: Array<[number, number]>): VmInfo {
  return {
    ref: { type: 'VirtualMachine', value: moref },
    name,
    powerState: 'poweredOn',
    toolsRunningStatus: 'guestToolsRunning',
    datacenter: 'DC0',
    datacenterPath: 'DC0',
    cluster: 'C0',
    host: 'H0',
    disks: disks.map(([key, capacityBytes]) => ({
      key,
      label: `Hard disk ${key - 1999}`,
      capacityBytes,
      fileName: `[ds1] ${name}/${name}_${key}.vmdk`,
      datastore: 'ds1',
      diskMode: 'persistent',
    })),
    snapshots: [],
  };
}

describe('HostsService', () => {
  let dir: string;
  let moduleRef: TestingModule;
  let service: HostsService;
  let data: DataSource;
  const fake = new FakeVsphere();
  const input = { name: 'vc1', url: 'https://vc1.example.test/', username: 'administrator@vsphere.local', password: 'Sup3r-secret!' };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-inventory-'));
    const config = loadConfig({ VMKEEP_DATA_DIR: dir }, dir);
    moduleRef = await Test.createTestingModule({ imports: [ConfigModule, PersistenceModule, InventoryModule] })
      .overrideProvider(APP_CONFIG)
      .useValue(config)
      .overrideProvider(VSPHERE_CLIENT)
      .useValue(fake)
      .compile();
    await moduleRef.init();
    service = moduleRef.get(HostsService);
    data = moduleRef.get(DataSource);
  });

  afterAll(async () => {
    await moduleRef?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    fake.failure = undefined;
    fake.logins = [];
  });

  it('stores the password sealed and never returns it', async () => {
    const host = await service.create(input);
    expect(host).toMatchObject({ name: 'vc1', url: 'https://vc1.example.test', insecure: false, thumbprint: null });
    expect(JSON.stringify(host)).not.toContain(input.password);
    expect(JSON.stringify(await service.list())).not.toContain(input.password);
    const row = await data.getRepository(HostEntity).findOneByOrFail({ id: host.id });
    expect(row.passwordSealed).toMatch(/^v1:/);
    expect(row.passwordSealed).not.toContain(input.password);
    // The session gets the decrypted password.
    await (await service.sessionFor(host.id)).logout();
    expect(fake.logins[0]).toMatchObject({ url: 'https://vc1.example.test', password: input.password, insecure: false });
  });

  it('refuses a duplicate name and unknown ids with typed errors', async () => {
    await expect(service.create(input)).rejects.toMatchObject({ code: 'conflict' });
    await expect(service.get('00000000-0000-0000-0000-000000000000')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('syncs VMs and disks, then marks vanished VMs missing without deleting them', async () => {
    const [host] = await service.list();
    fake.vms = [vm('vm-1', 'web', [[2000, 1 << 20], [2001, 2 << 20]]), vm('vm-2', 'db', [[2000, 4 << 20]])];
    const first = await service.sync(host.id);
    expect(first).toMatchObject({ vms: 2, disks: 3, added: 2, updated: 0, missing: 0 });
    const stored = await service.get(host.id);
    expect(stored).toMatchObject({ apiType: 'vcenter', apiVersion: '8.0.2.0', lastError: null });
    expect(stored.lastSyncAt).toBeInstanceOf(Date);

    // web loses a disk and grows the other; db disappears.
    fake.vms = [vm('vm-1', 'web-renamed', [[2000, 3 << 20]])];
    const second = await service.sync(host.id);
    expect(second).toMatchObject({ vms: 1, disks: 1, added: 0, updated: 1, missing: 1 });
    const vms = await data.getRepository(VmEntity).find({ where: { hostId: host.id }, order: { moref: 'ASC' } });
    expect(vms.map((v) => [v.moref, v.name, v.missing])).toEqual([
      ['vm-1', 'web-renamed', false],
      ['vm-2', 'db', true],
    ]);
    const webDisks = await data.getRepository(VmDiskEntity).find({ where: { vmId: vms[0].id } });
    expect(webDisks.map((d) => [d.deviceKey, d.capacityBytes])).toEqual([[2000, 3 << 20]]);

    // db comes back.
    fake.vms = [vm('vm-1', 'web-renamed', [[2000, 3 << 20]]), vm('vm-2', 'db', [[2000, 4 << 20]])];
    expect(await service.sync(host.id)).toMatchObject({ added: 0, updated: 2, missing: 0 });
    expect(await data.getRepository(VmEntity).countBy({ hostId: host.id, missing: true })).toBe(0);
  });

  it('maps vSphere errors to clear messages and records them on the host', async () => {
    const [host] = await service.list();
    fake.failure = new AuthenticationError('InvalidLogin');
    const auth = await service.sync(host.id).catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(HostConnectionError);
    expect(auth).toMatchObject({ code: 'host_auth', message: 'vc1: the host refused the user name or password' });
    expect((await service.get(host.id)).lastError).toBe('vc1: the host refused the user name or password');

    fake.failure = new ConnectionError('cannot reach vc1.example.test: ECONNREFUSED');
    await expect(service.test(host.id)).rejects.toMatchObject({ code: 'host_unreachable', message: expect.stringContaining('ECONNREFUSED') });

    fake.failure = new CertificateError('certificate does not match the pinned thumbprint', '11:22:33');
    const cert = await service.test({ url: 'https://other.test', username: 'u', password: 'p' }).catch((e: unknown) => e);
    expect(cert).toMatchObject({ code: 'host_certificate', presentedThumbprint: '11:22:33' });
    expect((cert as Error).message).toContain('11:22:33');
    expect((cert as Error).message).not.toContain('p@');
  });

  it('updates fields, re-seals a new password and deletes the host with its VMs', async () => {
    const [host] = await service.list();
    const before = (await data.getRepository(HostEntity).findOneByOrFail({ id: host.id })).passwordSealed;
    const updated = await service.update(host.id, { insecure: true, password: 'n3w-pass' });
    expect(updated.insecure).toBe(true);
    const after = (await data.getRepository(HostEntity).findOneByOrFail({ id: host.id })).passwordSealed;
    expect(after).not.toBe(before);
    fake.failure = undefined;
    expect(await service.test(host.id)).toEqual({ apiType: 'VirtualCenter', apiVersion: '8.0.2.0', fullName: 'Fake vCenter 8' });
    expect(fake.logins.at(-1)).toMatchObject({ password: 'n3w-pass', insecure: true });
    await service.delete(host.id);
    expect(await service.list()).toEqual([]);
    expect(await data.getRepository(VmEntity).countBy({ hostId: host.id })).toBe(0);
  });
});
