// Policy selection by folder, resource pool, vSphere tag and custom attribute, end to end: vcsim places and
// labels its built-in VMs through the real APIs (RelocateVM_Task, vAPI tagging REST, CustomFieldsManager.SetField;
// test/vcsim/labels.go), the real API registers and syncs the host, and policies created through the API select
// exactly the expected VMs. Redis is the appliance's own embedded one (a unix socket in the temp data folder).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { APP_CONFIG, AppConfig, loadConfig } from '@vmkeep/config';
import { HostEntity, VmEntity } from '@vmkeep/persistence';
import { PolicyMembership } from '@vmkeep/policies';
import { stopEmbeddedRedis } from '@vmkeep/queue';
import { AppModule } from '../apps/api/src/app.module';
import { configureApp } from '../apps/api/src/app';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

describe('policy selection by folder, resource pool, tag and custom attribute (vcsim)', () => {
  let dir: string;
  let config: AppConfig;
  let app: INestApplication;
  let data: DataSource;
  let sim: VcsimInstance;
  let token: string;

  const api = () => request(app.getHttpServer());
  const auth = () => ({ Authorization: `Bearer ${token}` });
  const schedule = { daily: '03:00' };
  let n = 0;
  /** Creates a policy with this selection and returns the names of the VMs it selects now, with reasons. */
  async function select(selection: object, enabled = false): Promise<{ names: string[]; body: Record<string, unknown> }> {
    const res = await api().post('/api/policies').set(auth()).send({ name: `sel-${++n}`, enabled, schedule, selection }).expect(201);
    return { names: (res.body.vms as { name: string }[]).map((v) => v.name), body: res.body };
  }

  beforeAll(async () => {
    sim = await startVcsim({
      labels: [
        { vm: 'DC0_H0_VM0', folder: 'prod/web', tags: [{ category: 'env', name: 'prod' }] },
        { vm: 'DC0_H0_VM1', folder: 'production', attributes: { owner: 'web-team' } },
        { vm: 'DC0_C0_RP0_VM0', pool: 'gold', tags: [{ category: 'env', name: 'test' }], attributes: { owner: 'db-team', tier: '1' } },
      ],
    });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmkeep-policy-selection-'));
    config = loadConfig({ VMKEEP_DATA_DIR: dir, VMKEEP_ADMIN_PASSWORD: 'admin-pw-123' }, dir);
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).overrideProvider(APP_CONFIG).useValue(config).compile();
    app = moduleRef.createNestApplication({ logger: ['error'] });
    configureApp(app);
    await app.init();
    data = app.get(DataSource);
    token = (await api().post('/api/auth/login').send({ username: 'admin', password: 'admin-pw-123' }).expect(200)).body.token;
    const host = await api()
      .post('/api/hosts')
      .set(auth())
      .send({ name: 'vcsim', url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint })
      .expect(201);
    await api().post(`/api/hosts/${host.body.id}/sync`).set(auth()).expect(200);
  });

  afterAll(async () => {
    await app?.close();
    if (config) await stopEmbeddedRedis(config).catch(() => undefined);
    await sim?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('records folder path, resource pool, tags and custom attributes of every VM at sync', async () => {
    const rows = await data.getRepository(VmEntity).find({ order: { name: 'ASC' } });
    const byName = new Map(rows.map((v) => [v.name, v]));
    expect(byName.get('DC0_H0_VM0')).toMatchObject({ folderPath: '/DC0/vm/prod/web', tags: [{ category: 'env', name: 'prod' }], customAttributes: {} });
    expect(byName.get('DC0_H0_VM1')).toMatchObject({ folderPath: '/DC0/vm/production', tags: [], customAttributes: { owner: 'web-team' } });
    expect(byName.get('DC0_C0_RP0_VM0')).toMatchObject({
      folderPath: '/DC0/vm',
      resourcePool: '/DC0/host/DC0_C0/Resources/gold',
      tags: [{ category: 'env', name: 'test' }],
      customAttributes: { owner: 'db-team', tier: '1' },
    });
    expect(byName.get('DC0_C0_RP0_VM1')).toMatchObject({ folderPath: '/DC0/vm', resourcePool: '/DC0/host/DC0_C0/Resources', tags: [] });
    const listed = (await api().get('/api/vms').set(auth()).expect(200)).body as { name: string }[];
    expect(listed.find((v) => v.name === 'DC0_C0_RP0_VM0')).toMatchObject({
      folderPath: '/DC0/vm',
      resourcePool: '/DC0/host/DC0_C0/Resources/gold',
      tags: [{ category: 'env', name: 'test' }],
      customAttributes: { owner: 'db-team', tier: '1' },
    });
  });

  it('selects by folder (subfolders included, whole path segments only)', async () => {
    expect((await select({ folders: ['/DC0/vm/prod'] })).names).toEqual(['DC0_H0_VM0']);
    expect((await select({ folders: ['dc0/VM/production/'] })).names).toEqual(['DC0_H0_VM1']);
    const all = await select({ folders: ['/DC0/vm'] });
    expect(all.names).toEqual(['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1', 'DC0_H0_VM0', 'DC0_H0_VM1']);
    expect((all.body.selection as { folders: string[] }).folders).toEqual(['/DC0/vm']);
  });

  it('selects by resource pool name, or by pool path with its child pools', async () => {
    expect((await select({ resourcePools: ['gold'] })).names).toEqual(['DC0_C0_RP0_VM0']);
    expect((await select({ resourcePools: ['/DC0/host/DC0_C0/Resources'] })).names).toEqual(['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1']);
  });

  it('selects by vSphere tag (category and name) and by custom attribute value glob, saying why', async () => {
    const tagged = await select({ tags: [{ category: 'ENV', name: 'prod' }] });
    expect(tagged.body.vms).toEqual([expect.objectContaining({ name: 'DC0_H0_VM0', reason: 'tag ENV:prod' })]);
    expect((await select({ tags: [{ category: 'env', name: 'test' }, { category: 'env', name: 'prod' }] })).names).toEqual(['DC0_C0_RP0_VM0', 'DC0_H0_VM0']);
    expect((await select({ tags: [{ category: 'other', name: 'prod' }] })).names).toEqual([]);
    expect((await select({ customAttributes: [{ name: 'owner', value: 'web-*' }] })).names).toEqual(['DC0_H0_VM1']);
    expect((await select({ customAttributes: [{ name: 'owner', value: '*' }] })).names).toEqual(['DC0_C0_RP0_VM0', 'DC0_H0_VM1']);
    expect((await select({ customAttributes: [{ name: 'tier', value: '2' }] })).names).toEqual([]);
  });

  it('applies exclusions over the new criteria', async () => {
    expect((await select({ folders: ['/DC0/vm'], excludePatterns: ['DC0_H0_*'] })).names).toEqual(['DC0_C0_RP0_VM0', 'DC0_C0_RP0_VM1']);
  });

  it('reports a VM two enabled policies select (by tag and by folder)', async () => {
    await select({ tags: [{ category: 'env', name: 'prod' }] }, true);
    const second = await select({ folders: ['/DC0/vm/prod/web'] }, true);
    expect(second.body.overlaps).toEqual([expect.objectContaining({ vmName: 'DC0_H0_VM0' })]);
    expect(second.body.warnings).toEqual([expect.stringMatching(/^VM DC0_H0_VM0 is also in policy sel-/)]);
  });

  it('refreshes inventories older than a minute before a run selects, and reports hosts it cannot reach', async () => {
    const vms = data.getRepository(VmEntity);
    const hosts = data.getRepository(HostEntity);
    const vm = (await vms.findOneBy({ name: 'DC0_H0_VM0' }))!;
    // As if the VM had been tagged on the host after the last sync.
    await vms.update(vm.id, { tags: [], folderPath: '/DC0/vm' });
    const membership = app.get(PolicyMembership);
    expect(await membership.refresh()).toEqual([]); // synced just now: nothing to do
    expect((await vms.findOneBy({ id: vm.id }))!.tags).toEqual([]);

    const stale = new Date(Date.now() - 120_000);
    await hosts.update({ name: 'vcsim' }, { lastSyncAt: stale });
    const gone = await api()
      .post('/api/hosts')
      .set(auth())
      .send({ name: 'gone', url: 'https://127.0.0.1:1', username: 'u', password: 'p', insecure: true })
      .expect(201);
    await hosts.update(gone.body.id, { lastSyncAt: stale });
    const problems = await membership.refresh();
    expect(problems).toEqual([expect.stringMatching(/^inventory of host gone not refreshed \(.*\); selecting from its sync of /)]);
    expect(await vms.findOneBy({ id: vm.id })).toMatchObject({ tags: [{ category: 'env', name: 'prod' }], folderPath: '/DC0/vm/prod/web' });
  });

  it.each([
    [{ tags: [{ category: 'env' }] }, /tags\.0\.name|selection\.tags\[0\]/],
    [{ customAttributes: [{ name: 'owner', value: '' }] }, /customAttributes/],
    [{ folders: ['/'] }, /selection\.folders: a folder path must name a folder/],
    [{ resourcePools: [''] }, /resourcePools/],
  ])('refuses the selection %j with 400', async (selection, message) => {
    const res = await api().post('/api/policies').set(auth()).send({ name: 'bad', schedule, selection }).expect(400);
    expect(JSON.stringify(res.body.message)).toMatch(message);
  });
});
