// Test helper: the backup target of a BackupService constructed by hand (unit specs, vcsim suites, benchmarks) —
// the configured VMKEEP_REPOSITORY folder, unencrypted, without the repositories table. The appliance resolves
// targets with RepositoriesService (@vmkeep/repositories).
import type { AppConfig } from '@vmkeep/config';
import { RepositoryResolver, type BackupTarget } from '@vmkeep/repositories';
import { Repository } from '@vmkeep/repository';

/** `config.repositoryPath` as the only backup target, opened (or initialised) once; a failed open is retried. */
export class FolderRepositoryResolver extends RepositoryResolver {
  private opening?: Promise<Repository>;

  constructor(private readonly config: Pick<AppConfig, 'repositoryPath' | 'chunkSize'>) {
    super();
  }

  /** Always the configured folder (`repositoryId` is ignored: it needs the repositories table). */
  async forBackup(): Promise<BackupTarget> {
    const folder = this.config.repositoryPath;
    return { id: null, location: folder, repository: await this.open(), folder };
  }

  private open(): Promise<Repository> {
    if (!this.opening) {
      const opening = Repository.openOrInit(this.config.repositoryPath, { chunkSize: this.config.chunkSize });
      opening.catch(() => {
        if (this.opening === opening) this.opening = undefined;
      });
      this.opening = opening;
    }
    return this.opening;
  }
}
