import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { RepositoryResolver, type BackupTarget } from '@vmkeep/repositories';
import { Repository, closeSharedChunkWorkers } from '@vmkeep/repository';

/**
 * The configured repository folder (VMKEEP_REPOSITORY, unencrypted) as the only backup target, opened once per
 * process. The appliance uses RepositoriesService (@vmkeep/repositories) instead; this stays for tests and tools
 * that run BackupService on a bare folder without the repositories table.
 */
@Injectable()
export class ChunkRepositoryProvider extends RepositoryResolver implements OnApplicationShutdown {
  private opening?: Promise<Repository>;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    super();
  }

  get path(): string {
    return this.config.repositoryPath;
  }

  get(): Promise<Repository> {
    const current = this.opening;
    if (current) return current;
    const opening = this.open();
    opening.catch(() => (this.opening = undefined)); // a failed open is retried by the next job
    this.opening = opening;
    return opening;
  }

  /** Always the configured folder: a `repositoryId` needs the repositories table (RepositoriesService). */
  async forBackup(): Promise<BackupTarget> {
    return { id: null, location: this.path, repository: await this.get(), folder: this.path };
  }

  async onApplicationShutdown(): Promise<void> {
    await closeSharedChunkWorkers();
  }

  private async open(): Promise<Repository> {
    const { repositoryPath, chunkSize } = this.config;
    return Repository.openOrInit(repositoryPath, { chunkSize });
  }
}
