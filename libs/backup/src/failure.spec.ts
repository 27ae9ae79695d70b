import { DiskError } from '@vmkeep/disk';
import { AuthenticationError, CertificateError, ConnectionError, FaultError, NotFoundError } from '@vmkeep/vsphere';
import { BackupFailure, describeFailure } from './failure';

describe('describeFailure', () => {
  const ctx = { hostName: 'vc1', vmName: 'web-1' };

  it('says what went wrong and on which host', () => {
    expect(describeFailure(new AuthenticationError('Cannot complete login due to an incorrect user name or password'), ctx)).toBe(
      'host vc1 rejected the credentials: Cannot complete login due to an incorrect user name or password',
    );
    expect(describeFailure(new ConnectionError('connect ECONNREFUSED 10.0.0.1:443'), ctx)).toBe(
      'host vc1 is unreachable: connect ECONNREFUSED 10.0.0.1:443',
    );
    expect(describeFailure(new CertificateError('certificate does not match the pinned thumbprint'), ctx)).toMatch(
      /^host vc1 presented an untrusted TLS certificate: /,
    );
    expect(describeFailure(new FaultError('file is locked', 'FileLocked'), ctx)).toBe('host vc1 returned FileLocked: file is locked');
    expect(describeFailure(new NotFoundError('snapshot-9 not found'), ctx)).toBe('snapshot-9 not found (not found on host vc1)');
    expect(describeFailure(new DiskError('short read', '[ds] a.vmdk', 512), ctx)).toBe(
      'reading disk data failed: [ds] a.vmdk @512: short read',
    );
  });

  it('passes prepared messages through and copes with non-errors', () => {
    expect(describeFailure(new BackupFailure('VM web-1 no longer exists on vc1'))).toBe('VM web-1 no longer exists on vc1');
    expect(describeFailure(new ConnectionError('timeout'))).toBe('the host is unreachable: timeout');
    expect(describeFailure('plain text')).toBe('plain text');
  });
});
