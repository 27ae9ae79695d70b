/**
 * Quiesce modes end to end below the API: BackupService with a real SQLite database and repository against vcsim.
 * One powered-on VM has no VMware Tools running (quiescing cannot work), the other has Tools running (the
 * harness's guest option). "require" fails the job with the reason and writes nothing; "try" falls back to a
 * crash-consistent point that says why; "never" does not quiesce.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BackupService } from '@vmkeep/backup';
import { loadConfig, type AppConfig } from '@vmkeep/config';
import { JobEntity, openDataSource, RestorePointEntity, type VmEntity } from '@vmkeep/persistence';
import { closeSharedChunkWorkers, Repository } from '@vmkeep/repository';
import { connect } from '@vmkeep/vsphere';
import type { DataSource } from 'typeorm';
import { backupServiceOn, saveVcsimVms } from './peers/backup-service';
import { buildRandomZeroImage } from './peers/disk-images';
import { startVcsim, type VcsimInstance } from './peers/vcsim';

describe('quiesce modes on vcsim', () => {
  let work: string;
  let sim: VcsimInstance;
  let config: AppConfig;
  let db: DataSource;
  let service: BackupService;
  let vmRows: Map<string, VmEntity>;
  const connectAdmin = () => connect({ url: sim.url, username: sim.username, password: sim.password, thumbprint: sim.thumbprint });

  beforeAll(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'vmkeep-e2e-quiesce-'));
    const image = await buildRandomZeroImage({ dir: work, seed: 'quiesce', sizeMiB: 2 });
    sim = await startVcsim({
      seed: [
        { name: 'no-tools', powerOn: true, disks: [{ image: image.path }] },
        { name: 'with-tools', powerOn: true, disks: [{ image: image.path }], guest: { username: 'root', password: 'guest-pw' } },
      ],
    });
    config = loadConfig({ VMKEEP_DATA_DIR: path.join(work, 'data') }, work);
    db = await openDataSource(config);
    vmRows = await saveVcsimVms(db, sim, ['no-tools', 'with-tools']);
    service = backupServiceOn(db, config, connectAdmin);
  });

  afterAll(async () => {
    await db?.destroy();
    await sim?.stop();
    await closeSharedChunkWorkers();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  async function backup(name: string, options: Record<string, unknown>) {
    const job = await db.getRepository(JobEntity).save({ type: 'backup', state: 'queued', vmId: vmRows.get(name)!.id, options });
    const state = await service.run(job.id);
    const row = (await db.getRepository(JobEntity).findOneBy({ id: job.id }))!;
    const point = row.restorePointId ? await db.getRepository(RestorePointEntity).findOneBy({ id: row.restorePointId }) : null;
    return { state, job: row, point };
  }

  const repositoryPoints = async () => (await (await Repository.open(config.repositoryPath)).listPoints()).length;

  it('"require" fails a VM without running Tools with the reason, and writes no point and no snapshot', async () => {
    const before = await repositoryPoints().catch(() => 0);
    const { state, job, point } = await backup('no-tools', { quiesce: true, quiesceMode: 'require' });
    expect(state).toBe('failed');
    expect(job.error).toBe('quiescing is required but VMware Tools are not running in VM no-tools (guestToolsNotRunning); no crash-consistent backup was made');
    expect(job.snapshotMoref).toBeNull();
    expect(point).toBeNull();
    expect(await db.getRepository(RestorePointEntity).countBy({ vmId: vmRows.get('no-tools')!.id })).toBe(0);
    expect(await repositoryPoints().catch(() => 0)).toBe(before);
    const session = await connectAdmin();
    try {
      const info = await session.getVm(vmRows.get('no-tools')!.moref);
      expect(info.snapshots).toEqual([]);
      expect(info.changeTrackingEnabled).toBe(false); // failed before changing anything on the VM
    } finally {
      await session.logout();
    }
  });

  it('"try" falls back to a crash-consistent point and says so on the job and the point', async () => {
    const { state, job, point } = await backup('no-tools', { quiesce: true, quiesceMode: 'try' });
    expect(state).toBe('succeeded');
    const why = /crash-consistent: VMware Tools are not running in VM no-tools \(guestToolsNotRunning\), the guest could not be quiesced/;
    expect(point).toMatchObject({ quiesced: false, quiesceNote: expect.stringMatching(why) });
    expect(job.phase).toMatch(why);
    const manifest = await (await Repository.open(config.repositoryPath)).readManifest(point!.repositoryPointId);
    expect(manifest.meta).toMatchObject({ quiesced: false, quiesceNote: expect.stringMatching(why) });
  });

  it('quiesces a VM with Tools running in "require" and "try" (backup now), and never in "never"', async () => {
    const required = await backup('with-tools', { quiesce: true, quiesceMode: 'require' });
    expect(required.state).toBe('succeeded');
    expect(required.point).toMatchObject({ quiesced: true, quiesceNote: null });
    expect((await backup('with-tools', { quiesce: true })).point).toMatchObject({ quiesced: true, quiesceNote: null });
    const never = await backup('with-tools', { quiesce: false, quiesceMode: 'never' });
    expect(never.point).toMatchObject({ quiesced: false, quiesceNote: null });
    expect(never.job.phase).not.toMatch(/quiesc/);
  });
});
