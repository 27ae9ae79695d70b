import { FileIndexError } from '@vmkeep/file-index';
import { PassphraseRequiredError, RepositoryNotFoundError, StorageError, WrongPassphraseError } from '@vmkeep/repository';
import { unavailableReason } from './unavailable-reason';

describe('unavailableReason', () => {
  it('says what to check for the typed repository errors', () => {
    expect(unavailableReason(new RepositoryNotFoundError('/mnt/offsite'))).toBe(
      'no repository at /mnt/offsite (config file missing): moved, removed or not mounted?',
    );
    expect(unavailableReason(new WrongPassphraseError())).toBe('the stored passphrase does not open the repository');
    expect(unavailableReason(new PassphraseRequiredError())).toBe('the repository is encrypted and no passphrase is stored for it');
    expect(unavailableReason(new FileIndexError('index page abc is missing', 'PAGE_MISSING'))).toBe('index page abc is missing');
  });

  it('keeps storage and system errors, masking what looks like a secret', () => {
    const s3 = new StorageError('get', 'config.json', 's3://bucket/vmkeep', new Error('connect ECONNREFUSED 127.0.0.1:9'));
    expect(unavailableReason(s3)).toBe('storage s3://bucket/vmkeep: get config.json failed: connect ECONNREFUSED 127.0.0.1:9');
    const denied = Object.assign(new Error("EACCES: permission denied, open '/srv/r/config.json'"), { code: 'EACCES' });
    expect(unavailableReason(denied)).toBe('permission denied');
    const leaky = new Error('request to https://user:hunter2@s3.example/bucket failed, x-amz-security-token=AKIAxyz');
    const reason = unavailableReason(leaky);
    expect(reason).not.toContain('hunter2');
    expect(reason).not.toContain('AKIAxyz');
    expect(unavailableReason('x'.repeat(2000))).toHaveLength(500);
  });
});
