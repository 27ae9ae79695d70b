import { FaultError, VsphereError } from './errors';
import { fileAttributesArg, splitGuestPath, guestError, GuestAuthenticationError, GuestFileExistsError, GuestToolsError, parseListFiles, transferUrl } from './guest-ops';

describe('transferUrl', () => {
  it('puts the session host in place of "*" and keeps port, path and query', () => {
    expect(transferUrl('https://*:443/guestFile?id=7&token=abc', 'esx1.lab').toString()).toBe('https://esx1.lab/guestFile?id=7&token=abc');
    expect(transferUrl('https://*/guestFile?id=1', '10.0.0.5').toString()).toBe('https://10.0.0.5/guestFile?id=1');
    expect(transferUrl('https://*:8443/x', '::1').hostname).toBe('[::1]');
  });
  it('keeps a named host and refuses anything but https', () => {
    expect(transferUrl('https://esx2.lab:443/guestFile?id=1', 'vc.lab').hostname).toBe('esx2.lab');
    expect(() => transferUrl('http://*/guestFile', 'vc.lab')).toThrow(/not https/);
    expect(() => transferUrl('not a url', 'vc.lab')).toThrow(VsphereError);
  });
});

describe('fileAttributesArg', () => {
  it('sends POSIX permissions and mtime on non-Windows guests, the Windows type without permissions otherwise', () => {
    const mtime = new Date('2026-01-02T03:04:05.000Z');
    expect(fileAttributesArg({ mode: 0o100640, mtime }, 'linuxGuest')).toEqual({
      attributes: { 'xsi:type': 'GuestPosixFileAttributes' },
      modificationTime: '2026-01-02T03:04:05.000Z',
      permissions: 0o640,
    });
    expect(fileAttributesArg({ mode: 0o644, mtime }, 'windowsGuest')).toEqual({ attributes: { 'xsi:type': 'GuestWindowsFileAttributes' }, modificationTime: '2026-01-02T03:04:05.000Z' });
    expect(fileAttributesArg({ mtime: new Date(NaN) }, '')).toEqual({ attributes: { 'xsi:type': 'GuestPosixFileAttributes' } });
  });
});

describe('parseListFiles', () => {
  it('reads one or many entries and the remaining count', () => {
    expect(parseListFiles({ files: { path: 'a', type: 'directory', size: '0' }, remaining: '3' })).toEqual({ files: [{ path: 'a', type: 'directory', size: 0 }], remaining: 3 });
    expect(parseListFiles({ files: [{ path: 'x', type: 'file', size: '12' }, { path: 'l', type: 'symlink', size: '1' }] }).files.map((f) => f.type)).toEqual(['file', 'symlink']);
    expect(parseListFiles(undefined)).toEqual({ files: [], remaining: 0 });
  });
});

describe('guestError', () => {
  it('maps guest faults to typed errors and leaves others alone', () => {
    expect(guestError(new FaultError('x', 'InvalidGuestLogin'), 'vm-1')).toBeInstanceOf(GuestAuthenticationError);
    expect(guestError(new FaultError('x', 'GuestOperationsUnavailable'), 'vm-1')).toBeInstanceOf(GuestToolsError);
    const exists = guestError(new FaultError('x', 'FileAlreadyExists'), 'vm-1', '/etc/hosts') as GuestFileExistsError;
    expect(exists).toBeInstanceOf(GuestFileExistsError);
    expect(exists.guestPath).toBe('/etc/hosts');
    const other = new FaultError('x', 'FileNotFound');
    expect(guestError(other, 'vm-1', '/a')).toBe(other);
  });
});

describe('splitGuestPath', () => {
  it('splits POSIX and Windows paths into folder and name; roots have no name', () => {
    expect(splitGuestPath('/a/b', '/')).toEqual({ parent: '/a', name: 'b' });
    expect(splitGuestPath('/a/', '/')).toEqual({ parent: '/', name: 'a' });
    expect(splitGuestPath('/', '/')).toEqual({ parent: '/', name: '' });
    expect(splitGuestPath('C:\\Restore', '\\')).toEqual({ parent: 'C:\\', name: 'Restore' });
    expect(splitGuestPath('C:\\Restore\\x.txt', '\\')).toEqual({ parent: 'C:\\Restore', name: 'x.txt' });
    expect(splitGuestPath('C:\\', '\\')).toEqual({ parent: 'C:\\', name: '' });
  });
});
