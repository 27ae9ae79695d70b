import { Repository } from '@vmkeep/repository';

/** Where a restore point row says its data is. */
export interface PointLocation {
  repositoryId?: string | null;
  repositoryPath: string;
}

type Opener = (point: PointLocation) => Promise<Repository>;

let opener: Opener | undefined;

/**
 * Makes `openPointRepository` use the process's repository registry (RepositoriesService installs itself when
 * its module starts). Returns the function that uninstalls it again.
 */
export function installPointRepositoryOpener(fn: Opener): () => void {
  opener = fn;
  return () => {
    if (opener === fn) opener = undefined;
  };
}

/**
 * The repository holding a restore point, opened with its passphrase and S3 settings and shared by the process
 * (callers must not close it). Without a registry (a service used outside the appliance's modules) the point's
 * folder is opened as it is, which works for unencrypted folders only.
 */
export function openPointRepository(point: PointLocation): Promise<Repository> {
  return opener ? opener(point) : Repository.open(point.repositoryPath);
}
