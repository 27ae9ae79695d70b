import { VmkeepError } from '@vmkeep/contracts';
import { FileIndexError } from '@vmkeep/file-index';
import { redactSecrets } from '@vmkeep/persistence';
import { PassphraseRequiredError, RepositoryError, RepositoryNotFoundError, WrongPassphraseError } from '@vmkeep/repository';

const MAX_REASON = 500;

/**
 * Why a repository could not be searched, for the API result and the log: the typed errors of the repository
 * and file index libraries (whose messages never hold a passphrase or key) in words an admin acts on; anything
 * else as its message with what looks like a secret masked.
 */
export function unavailableReason(err: unknown): string {
  let reason: string;
  if (err instanceof RepositoryNotFoundError) reason = `${err.message}: moved, removed or not mounted?`;
  else if (err instanceof WrongPassphraseError) reason = 'the stored passphrase does not open the repository';
  else if (err instanceof PassphraseRequiredError) reason = 'the repository is encrypted and no passphrase is stored for it';
  else if (err instanceof RepositoryError || err instanceof FileIndexError || err instanceof VmkeepError) reason = err.message;
  else if (err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code)) {
    reason = err.code === 'EACCES' ? 'permission denied' : `${err.code}: ${err.message}`;
  } else reason = err instanceof Error ? err.message : String(err);
  const masked = redactSecrets(reason);
  return masked.length > MAX_REASON ? `${masked.slice(0, MAX_REASON - 1)}…` : masked;
}
