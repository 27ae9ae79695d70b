import type { Repository, RuntimeOptions } from '@vmkeep/repository';

/** The repository one backup writes into. */
export interface BackupTarget {
  /** RepositoryEntity id; null when the caller works on a bare folder (the legacy single-folder provider). */
  id: string | null;
  /** Folder path or `s3://BUCKET/PREFIX`, recorded as the restore point's `repositoryPath`. */
  location: string;
  repository: Repository;
  /** The local folder (where the guest file index is kept); undefined for object storage. */
  folder?: string;
  /**
   * What another thread needs to open `location` again (passphrase, S3 settings): the guest file index walk runs
   * on a worker thread that opens the repository itself. Secrets: never log it.
   */
  runtime?: Pick<RuntimeOptions, 'passphrase' | 's3'>;
}

/** What the backup job asks for its target; RepositoriesService is the appliance's implementation. */
export abstract class RepositoryResolver {
  /** The repository named by `repositoryId`, or the default one when it is null/undefined. */
  abstract forBackup(repositoryId?: string | null): Promise<BackupTarget>;
}
