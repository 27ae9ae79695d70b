import { VmkeepError } from '@vmkeep/contracts';
import { GuestAuthenticationError, GuestFileExistsError, GuestToolsError } from '@vmkeep/vsphere';
import { guestRestoreError, parseGuestFolder } from './guest-restore';

describe('parseGuestFolder', () => {
  it('takes absolute POSIX and Windows folders and tidies separators', () => {
    expect(parseGuestFolder('/restore//here/')).toEqual({ path: '/restore/here', separator: '/' });
    expect(parseGuestFolder('/')).toEqual({ path: '/', separator: '/' });
    expect(parseGuestFolder('C:\\Restore\\')).toEqual({ path: 'C:\\Restore', separator: '\\' });
    expect(parseGuestFolder('d:/data/x')).toEqual({ path: 'd:\\data\\x', separator: '\\' });
    expect(parseGuestFolder('C:\\')).toEqual({ path: 'C:\\', separator: '\\' });
    expect(parseGuestFolder('\\\\server\\share\\x')).toEqual({ path: '\\\\server\\share\\x', separator: '\\' });
  });
  it('refuses relative paths, "..", NUL and empty input as invalid', () => {
    for (const bad of ['', '  ', 'relative/x', 'C:relative', '/a/../b', 'C:\\a\\..\\b', '/a\0b']) {
      expect(() => parseGuestFolder(bad)).toThrow(VmkeepError);
      try {
        parseGuestFolder(bad);
      } catch (e) {
        expect((e as VmkeepError).code).toBe('invalid');
      }
    }
  });
});

describe('guestRestoreError', () => {
  it('maps guest errors to API error codes', () => {
    expect(guestRestoreError(new GuestToolsError('tools'))).toMatchObject({ code: 'conflict' });
    expect(guestRestoreError(new GuestAuthenticationError('no'))).toMatchObject({ code: 'invalid', message: expect.stringMatching(/check the guest user name and password/) });
    expect(guestRestoreError(new GuestFileExistsError('exists', '/x'))).toMatchObject({ code: 'conflict', message: expect.stringMatching(/overwrite/) });
    const other = new Error('x');
    expect(guestRestoreError(other)).toBe(other);
  });
});
