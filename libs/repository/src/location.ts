/**
 * Where a repository lives, as users name it (`--repo`, VMKEEP_REPO): a folder path, or later an S3 URL.
 * Parsing is separate from opening so every front end (CLI, API) accepts the same spellings.
 */
import * as path from 'node:path';
import { RepositoryError } from './errors';

export type RepositoryLocation =
  | { kind: 'local'; path: string }
  | { kind: 's3'; bucket: string; prefix: string };

/** Parses a folder path (relative to `cwd`), `file:///path`, or `s3://BUCKET/PREFIX`. */
export function parseRepositoryLocation(spec: string, cwd = process.cwd()): RepositoryLocation {
  const value = spec.trim();
  if (value === '') throw new RepositoryError('the repository location is empty', 'INVALID_LOCATION');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(value)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'local', path: path.resolve(cwd, value) };
  if (scheme === 'file') {
    const url = new URL(value);
    if (url.host !== '' && url.host !== 'localhost') {
      throw new RepositoryError(`file URL ${value} names a host; use a local path`, 'INVALID_LOCATION');
    }
    return { kind: 'local', path: decodeURIComponent(url.pathname) };
  }
  if (scheme === 's3') {
    const rest = value.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
      throw new RepositoryError(`invalid S3 bucket name in ${value}`, 'INVALID_LOCATION');
    }
    return { kind: 's3', bucket, prefix };
  }
  throw new RepositoryError(
    `unsupported repository location ${JSON.stringify(value)}: use a folder path or s3://BUCKET/PREFIX`,
    'INVALID_LOCATION',
  );
}
