import { VmkeepError } from '@vmkeep/contracts';
import { FileSystemError, PathError, UnsupportedFileSystemError } from '@vmkeep/filesystems';
import { RepositoryError } from '@vmkeep/repository';
import { toVmkeepError } from './browser';
import { GuestPathError } from './paths';
import { fromThreadError, toThreadError } from './thread-protocol';

/** Through structured clone, as postMessage carries it. */
const across = (err: unknown) => fromThreadError(structuredClone(toThreadError(err)));

describe('errors across the thread boundary', () => {
  it('keep their class, message, name and fields', () => {
    const cases: [Error, new (...args: never[]) => Error, Record<string, unknown>][] = [
      [new PathError('ENOENT', '/a/b', 'no such file or directory'), PathError, { code: 'ENOENT', path: '/a/b' }],
      [new UnsupportedFileSystemError('ntfs', 'compressed files are not supported', 4096), UnsupportedFileSystemError, { fsType: 'ntfs', offset: 4096 }],
      [new FileSystemError('ext4', 'extent node', 'bad magic', 8192), FileSystemError, { source: 'ext4', structure: 'extent node', offset: 8192 }],
      [new GuestPathError('/../x', '".." leaves the root'), GuestPathError, { code: 'invalid', path: '/../x' }],
      [new VmkeepError('no volume 9', 'not_found'), VmkeepError, { code: 'not_found' }],
      [new RepositoryError('chunk missing', 'CHUNK_MISSING'), RepositoryError, { code: 'CHUNK_MISSING' }],
    ];
    for (const [original, type, fields] of cases) {
      const rebuilt = across(original);
      expect(rebuilt).toBeInstanceOf(type);
      expect(rebuilt.message).toBe(original.message);
      expect(rebuilt.name).toBe(original.name);
      expect(rebuilt).toMatchObject(fields);
    }
  });

  it('map to the same API errors as in this thread', () => {
    for (const err of [new PathError('ENOENT', '/x', 'gone'), new PathError('ENOTDIR', '/x', 'not a folder'), new FileSystemError('xfs', 'inode', 'bad')]) {
      const here = toVmkeepError(err) as VmkeepError;
      const there = toVmkeepError(across(err)) as VmkeepError;
      expect([there.code, there.message]).toEqual([here.code, here.message]);
    }
    expect(toVmkeepError(across(new UnsupportedFileSystemError('ntfs')))).toMatchObject({ code: 'unsupported' });
  });

  it('keep the code of other errors', () => {
    const err = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    expect(across(err)).toMatchObject({ message: 'socket hang up', code: 'ECONNRESET' });
    expect(across('plain text').message).toBe('plain text');
  });
});
