import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { Repository, RepositoryNotEmptyError, closeSharedChunkWorkers } from '@vmkeep/repository';

/** Opens the appliance's repository once per process (opening initialises a fresh folder). */
@Injectable()
export class ChunkRepositoryProvider implements OnApplicationShutdown {
  private opening?: Promise<Repository>;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

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

  async onApplicationShutdown(): Promise<void> {
    await closeSharedChunkWorkers();
  }

  private async open(): Promise<Repository> {
    const { repositoryPath, chunkSize } = this.config;
    try {
      return await Repository.openOrInit(repositoryPath, { chunkSize });
    } catch (err) {
      // Another process initialised the folder between our open and init attempts.
      if (err instanceof RepositoryNotEmptyError) return Repository.open(repositoryPath);
      throw err;
    }
  }
}
