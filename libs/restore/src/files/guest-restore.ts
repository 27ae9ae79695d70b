/**
 * Restore a file or folder of a restore point into the running guest of a VM through vSphere guest operations:
 * Tools checked first, the destination folder made, then folders with MakeDirectoryInGuest and every file with
 * InitiateFileTransferToGuest + HTTP PUT of its bytes streamed from the repository (holes as zeros). Nothing is
 * written when the guest refuses the credentials or when the item exists in the guest and overwriting was not
 * asked for. Symlinks, devices, FIFOs and sockets cannot be made through guest operations: they are skipped and
 * reported. Pure: no Nest.
 */
import { Readable } from 'node:stream';
import { VmkeepError } from '@vmkeep/contracts';
import type { FileSystem } from '@vmkeep/filesystems';
import { GuestAuthenticationError, GuestFileExistsError, GuestToolsError, type GuestFiles } from '@vmkeep/vsphere';
import { translate } from './browser';
import { readFileRange } from './file-stream';
import { baseName, normalizeGuestPath } from './paths';
import { walkTree } from './walk';

/** The guest operations a restore needs (GuestFiles of @vmkeep/vsphere). */
export type GuestTarget = Pick<GuestFiles, 'vmId' | 'requireTools' | 'stat' | 'makeDirectory' | 'upload'>;

export interface GuestRestoreProgress {
  folders: number;
  files: number;
  bytes: number;
  /** Guest path being written. */
  current: string;
}

export interface GuestRestoreOptions {
  /** File system of the restore point volume and the path in it (file or folder). */
  fs: FileSystem;
  sourcePath: string;
  /** Folder in the guest the item is restored into (made when missing): "/restore" or "C:\\restore". */
  guestFolder: string;
  /** Replace files that exist in the guest (folders are merged); without it an existing item is refused. */
  overwrite?: boolean;
  onProgress?: (progress: GuestRestoreProgress) => void;
  signal?: AbortSignal;
}

export interface GuestRestoreResult {
  /** Guest path of the restored item. */
  target: string;
  folders: number;
  files: number;
  bytes: number;
  /** Entries left out (symlinks, devices, damaged metadata) with the reason. */
  skipped: { path: string; reason: string }[];
}

/** A guest folder path as given: absolute POSIX ("/a/b") or Windows ("C:\\a", "\\\\server\\share"), no "..". */
export function parseGuestFolder(input: string): { path: string; separator: '/' | '\\' } {
  const text = input.trim();
  const windows = /^[A-Za-z]:[\\/]/.test(text) || text.startsWith('\\\\');
  if (!text || text.includes('\0') || (!windows && !text.startsWith('/'))) {
    throw new VmkeepError(`invalid guest path ${JSON.stringify(input)}: an absolute path in the guest is needed ("/restore" or "C:\\restore")`, 'invalid');
  }
  if (text.split(/[\\/]/).includes('..')) throw new VmkeepError(`invalid guest path ${JSON.stringify(input)}: ".." is not allowed`, 'invalid');
  const separator = windows ? '\\' : '/';
  const cleaned = windows ? text.replace(/\//g, '\\') : text.replace(/\/+/g, '/');
  const trimmed = cleaned.length > (windows ? 3 : 1) ? cleaned.replace(/[\\/]+$/, '') : cleaned;
  return { path: trimmed, separator };
}

/** Guest-operation errors as API errors (VmkeepError codes); others unchanged. */
export function guestRestoreError(error: unknown): unknown {
  if (error instanceof GuestToolsError) return new VmkeepError(error.message, 'conflict');
  if (error instanceof GuestAuthenticationError) return new VmkeepError(`${error.message}: check the guest user name and password`, 'invalid');
  if (error instanceof GuestFileExistsError) return new VmkeepError(`${error.message}; ask for overwrite to replace it`, 'conflict');
  return error;
}

function join(folder: string, separator: string, name: string): string {
  if (!name) return folder;
  return folder.endsWith(separator) ? `${folder}${name}` : `${folder}${separator}${name}`;
}

/** Writes the item at `sourcePath` into `guestFolder` of the guest; see the module comment. */
export async function restoreToGuest(guest: GuestTarget, options: GuestRestoreOptions): Promise<GuestRestoreResult> {
  try {
    return await run(guest, options);
  } catch (error) {
    throw guestRestoreError(error);
  }
}

async function run(guest: GuestTarget, options: GuestRestoreOptions): Promise<GuestRestoreResult> {
  const source = normalizeGuestPath(options.sourcePath);
  const { path: folder, separator } = parseGuestFolder(options.guestFolder);
  const overwrite = options.overwrite ?? false;
  options.signal?.throwIfAborted();
  await translate(options.fs.stat(source));
  await guest.requireTools();

  // The first guest call authenticates: wrong credentials stop here, before anything is written.
  const existing = await guest.stat(folder, separator);
  if (!existing) await guest.makeDirectory(folder, true);
  else if (existing.type !== 'directory') throw new VmkeepError(`${folder} exists in the guest of VM ${guest.vmId} and is not a folder`, 'conflict');

  const rootName = baseName(source);
  const target = join(folder, separator, rootName);
  if (rootName && existing) {
    const there = await guest.stat(target, separator);
    if (there && !overwrite) throw new GuestFileExistsError(`VM ${guest.vmId}: ${target} already exists in the guest`, target);
  }

  const result: GuestRestoreResult = { target, folders: 0, files: 0, bytes: 0, skipped: [] };
  const report = (current: string) => options.onProgress?.({ folders: result.folders, files: result.files, bytes: result.bytes, current });
  const skip = (path: string, reason: string) => result.skipped.push({ path, reason });
  for await (const entry of walkTree(options.fs, source, rootName, skip)) {
    options.signal?.throwIfAborted();
    const relative = entry.name.split('/').filter(Boolean);
    const guestPath = relative.reduce((at, name) => join(at, separator, name), folder);
    const { stat } = entry;
    if (stat.type === 'directory') {
      if (guestPath === folder) continue;
      try {
        await guest.makeDirectory(guestPath, false);
      } catch (error) {
        // Merging into an existing folder is what overwrite asks for.
        if (!(overwrite && error instanceof GuestFileExistsError)) throw error;
      }
      result.folders++;
      report(guestPath);
    } else if (stat.type === 'file') {
      const handle = await translate(options.fs.open(entry.guestPath));
      report(guestPath);
      let sent = 0;
      const counted = (async function* () {
        for await (const piece of readFileRange(handle)) {
          sent += piece.length;
          yield piece;
        }
      })();
      await guest.upload(
        guestPath,
        { stream: Readable.from(counted, { objectMode: false }), size: handle.size, overwrite, attributes: { mode: stat.mode & 0o777, mtime: new Date(stat.mtimeMs) } },
        options.signal,
      );
      result.files++;
      result.bytes += sent;
      report(guestPath);
    } else {
      skip(entry.guestPath, `${stat.type}: cannot be created through guest operations`);
    }
  }
  return result;
}
