// Test helper: BackupService below the API (no Nest, no queue) on a real data source and repository, as the worker
// builds it, for suites that drive backups against vcsim directly.
import { BackupService } from '@vmkeep/backup';
import type { AppConfig } from '@vmkeep/config';
import type { HostsService } from '@vmkeep/inventory';
import { HostEntity, JobEntity, RestorePointEntity, VmEntity } from '@vmkeep/persistence';
import type { VimSession } from '@vmkeep/vsphere';
import type { DataSource } from 'typeorm';
import { FolderRepositoryResolver } from './folder-repository';
import type { VcsimInstance } from './vcsim';

/** A BackupService on `db`'s entities and `config`'s repository; `sessionFor` stands in for the hosts' sessions. */
export function backupServiceOn(db: DataSource, config: AppConfig, sessionFor: () => Promise<VimSession>): BackupService {
  const sessions = { sessionFor } as unknown as HostsService;
  return new BackupService(
    db.getRepository(JobEntity),
    db.getRepository(VmEntity),
    db.getRepository(HostEntity),
    db.getRepository(RestorePointEntity),
    sessions,
    new FolderRepositoryResolver(config),
  );
}

/** Saves the simulator as host row "vcsim" and its VMs called `names` as that host's VM rows; returns them by name. */
export async function saveVcsimVms(db: DataSource, sim: VcsimInstance, names: string[]): Promise<Map<string, VmEntity>> {
  const host = await db.getRepository(HostEntity).save({ name: 'vcsim', url: sim.url, username: sim.username, passwordSealed: 'x' });
  const rows = new Map<string, VmEntity>();
  for (const name of names) {
    const vm = sim.vms.find((v) => v.name === name);
    if (!vm) throw new Error(`vcsim has no VM named ${name}`);
    rows.set(name, await db.getRepository(VmEntity).save({ hostId: host.id, moref: vm.id, name }));
  }
  return rows;
}
