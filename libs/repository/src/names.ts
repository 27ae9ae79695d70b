/** Names inside a repository: point ids and disk keys, validated so no caller can escape the repository folder. */
import { randomBytes } from 'node:crypto';
import { DISK_KEY_PATTERN, POINT_ID_PATTERN } from './constants';
import { InvalidDiskKeyError } from './errors';

export function assertDiskKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || !DISK_KEY_PATTERN.test(key)) throw new InvalidDiskKeyError(String(key));
}

export function isDiskKey(key: unknown): key is string {
  return typeof key === 'string' && DISK_KEY_PATTERN.test(key);
}

export function isPointId(id: unknown): id is string {
  return typeof id === 'string' && POINT_ID_PATTERN.test(id);
}

let lastMillis = 0;

/**
 * A new point id: UTC time to the millisecond (strictly increasing within this process) and 32 random bits,
 * so ids sort by creation time and never collide across processes in practice.
 */
export function newPointId(now = Date.now()): { id: string; createdAt: Date } {
  const millis = Math.max(now, lastMillis + 1);
  lastMillis = millis;
  const createdAt = new Date(millis);
  const stamp = createdAt.toISOString().replace(/[-:.]/g, ''); // 20250102T030405678Z
  return { id: `${stamp}-${randomBytes(4).toString('hex')}`, createdAt };
}
