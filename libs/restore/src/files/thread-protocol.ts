/**
 * The messages between a browse session's worker thread (browse-worker.ts) and the thread serving requests
 * (threaded-browser.ts), and how errors cross between them with their type and code kept. Pure: no Nest.
 */
import { VmkeepError } from '@vmkeep/contracts';
import type { Extent } from '@vmkeep/disk';
import { FileSystemError, PathError, UnsupportedFileSystemError, type FileStat, type PathErrorCode, type ReaddirResult } from '@vmkeep/filesystems';
import { RepositoryError, type RuntimeOptions } from '@vmkeep/repository';
import type { DirPage, ListOptions, VolumeView, statView } from './browser';
import { GuestPathError } from './paths';

/** How the worker opens the point's repository. Holds keys and S3 secrets: never log it. */
export interface BrowseRepositoryOpening {
  /** Folder path or `s3://BUCKET/PREFIX`. */
  location: string;
  /** `unlockedKeys` opens an encrypted repository without running the passphrase KDF again. */
  runtime?: Pick<RuntimeOptions, 'passphrase' | 's3' | 'unlockedKeys'>;
}

/** What the worker is started with (workerData). */
export interface BrowseWorkerData {
  repository: BrowseRepositoryOpening;
  /** The repository's point id and the keys of the disks to browse, in volume order. */
  pointId: string;
  diskKeys: string[];
}

/** Requests: the browser's own calls, the file-system calls of one volume and the reads of one opened file. */
export type BrowseRequest =
  | { op: 'list'; volume: number; path: string | undefined; options: ListOptions }
  | { op: 'stat'; volume: number; path: string | undefined }
  | { op: 'readlink'; volume: number; path: string | undefined }
  | { op: 'fs.readdir'; volume: number; path: string; offset?: number; limit?: number }
  | { op: 'fs.readdirNames'; volume: number; path: string; limit?: number }
  | { op: 'fs.stat'; volume: number; path: string }
  | { op: 'fs.readlink'; volume: number; path: string }
  | { op: 'fs.open'; volume: number; path: string; handle: number }
  | { op: 'file.read'; volume: number; path: string; handle: number; offset: number; length: number }
  | { op: 'file.extents'; volume: number; path: string; handle: number }
  | { op: 'ping' }
  /** Closes the disks and the repository; the worker is terminated after the answer. */
  | { op: 'close' };

/** What each request answers. */
export interface BrowseAnswers {
  list: DirPage;
  stat: ReturnType<typeof statView>;
  readlink: { path: string; target: string };
  'fs.readdir': ReaddirResult;
  'fs.readdirNames': { names: string[]; complete: boolean };
  'fs.stat': FileStat;
  'fs.readlink': string;
  'fs.open': { size: number };
  /** The bytes read, in an ArrayBuffer of their own (transferred, not copied). */
  'file.read': ArrayBuffer;
  'file.extents': Extent[];
  ping: null;
  close: null;
}

export type BrowseOp = BrowseRequest['op'];

/** A request on the wire: numbered, answered by a reply with the same id. */
export type BrowseRequestMessage = BrowseRequest & { id: number };

export type BrowseReplyMessage = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: ThreadError };

/** The worker's first message: the volumes once every file system is opened, or why the point cannot be browsed. */
export type BrowseReadyMessage = { ready: true; volumes: VolumeView[] } | { ready: false; error: ThreadError };

/** An error as it crosses the thread boundary: enough to rebuild the same class with the same fields. */
export interface ThreadError {
  kind: 'vmkeep' | 'guest-path' | 'path' | 'unsupported' | 'filesystem' | 'repository' | 'other';
  name: string;
  message: string;
  code?: string;
  path?: string;
  source?: string;
  structure?: string;
  fsType?: string;
  offset?: number;
}

export function toThreadError(err: unknown): ThreadError {
  if (!(err instanceof Error)) return { kind: 'other', name: 'Error', message: String(err) };
  const base = { name: err.name, message: err.message };
  if (err instanceof GuestPathError) return { ...base, kind: 'guest-path', code: err.code, path: err.path };
  if (err instanceof VmkeepError) return { ...base, kind: 'vmkeep', code: err.code };
  if (err instanceof PathError) return { ...base, kind: 'path', code: err.code, path: err.path };
  if (err instanceof UnsupportedFileSystemError) return { ...base, kind: 'unsupported', fsType: err.fsType, ...offsetOf(err) };
  if (err instanceof FileSystemError) return { ...base, kind: 'filesystem', source: err.source, structure: err.structure, ...offsetOf(err) };
  if (err instanceof RepositoryError) return { ...base, kind: 'repository', code: err.code };
  const code = (err as { code?: unknown }).code;
  return { ...base, kind: 'other', ...(typeof code === 'string' ? { code } : {}) };
}

function offsetOf(err: FileSystemError): { offset?: number } {
  return err.offset === undefined ? {} : { offset: err.offset };
}

/** Sets the message and name exactly as they were on the other thread (constructors add prefixes). */
function same<E extends Error>(err: E, e: ThreadError): E {
  err.message = e.message;
  err.name = e.name;
  return err;
}

/** The error as the requesting thread sees it: the same class (instanceof holds), message, name and code. */
export function fromThreadError(e: ThreadError): Error {
  switch (e.kind) {
    case 'guest-path':
      return same(new GuestPathError(e.path ?? '', ''), e);
    case 'vmkeep':
      return same(new VmkeepError(e.message, e.code ?? 'invalid'), e);
    case 'path':
      return same(new PathError((e.code ?? 'EINVAL') as PathErrorCode, e.path ?? '', ''), e);
    case 'unsupported':
      return same(new UnsupportedFileSystemError(e.fsType ?? 'unknown', '', e.offset), e);
    case 'filesystem':
      return same(new FileSystemError(e.source ?? 'unknown', e.structure ?? 'unknown', '', e.offset), e);
    case 'repository':
      return same(new RepositoryError(e.message, e.code ?? 'UNKNOWN'), e);
    default: {
      const err = same(new Error(e.message), e) as Error & { code?: string };
      if (e.code) err.code = e.code;
      return err;
    }
  }
}
