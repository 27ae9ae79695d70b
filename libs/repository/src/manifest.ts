/** Restore point manifests: JSON, written last; parsing checks every field so a hostile file cannot mislead. */
import { AAD_MANIFEST, CIPHER, FORMAT_VERSION, MAX_CHUNK_SIZE, MAX_DISK_SIZE, MIN_CHUNK_SIZE } from './constants';
import { seal, unseal } from './crypto';
import { DecryptionError, RepositoryFormatError, UnsupportedFormatError } from './errors';
import { chunkCount } from './fixed-index';
import { isDiskKey } from './names';
import type { Manifest, ManifestDisk } from './types';

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const manifestAad = (pointId: string) => Buffer.from(AAD_MANIFEST + pointId, 'utf8');

/**
 * The manifest file's text. With `key` (encrypted repository) the JSON is sealed into an envelope
 * `{ format, cipher, data }` bound to the point id, so it reveals neither VM names nor sizes.
 */
export function serializeManifest(manifest: Manifest, key?: Uint8Array): string {
  const json = JSON.stringify(manifest, null, 2) + '\n';
  if (!key) return json;
  const data = seal(key, Buffer.from(json, 'utf8'), manifestAad(manifest.id)).toString('base64');
  return JSON.stringify({ format: FORMAT_VERSION, cipher: CIPHER, data }) + '\n';
}

function openEnvelope(value: unknown, pointId: string, where: string, key: Uint8Array): unknown {
  if (!isObject(value) || value.cipher !== CIPHER || typeof value.data !== 'string') {
    throw new RepositoryFormatError(where, 'not encrypted, in an encrypted repository');
  }
  const plain = unseal(key, Buffer.from(value.data, 'base64'), manifestAad(pointId));
  if (!plain) throw new DecryptionError(where);
  try {
    return JSON.parse(plain.toString('utf8'));
  } catch {
    throw new RepositoryFormatError(where, 'sealed content is not valid JSON');
  }
}

function parseDisk(value: unknown, where: string): ManifestDisk {
  const bad = (reason: string) => new RepositoryFormatError(where, reason);
  if (!isObject(value)) throw bad('disk entry is not an object');
  const { key, size, chunkSize, chunks, meta } = value;
  if (!isDiskKey(key)) throw bad(`invalid disk key ${JSON.stringify(key)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > MAX_DISK_SIZE) {
    throw bad(`disk ${key}: invalid size ${String(size)}`);
  }
  if (typeof chunkSize !== 'number' || !Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw bad(`disk ${key}: invalid chunk size ${String(chunkSize)}`);
  }
  if (chunks !== chunkCount(size, chunkSize)) throw bad(`disk ${key}: chunk count ${String(chunks)} does not match its size`);
  if (!isObject(meta)) throw bad(`disk ${key}: meta is not an object`);
  return { key, size, chunkSize, chunks, meta };
}

/**
 * Parses a manifest file's text; `pointId` is the folder it was found in and must match its id. `key`: the AES
 * key of an encrypted repository (whose manifests must all be sealed).
 */
export function parseManifest(text: string, pointId: string, key?: Uint8Array): Manifest {
  const where = `manifest of point ${pointId}`;
  const bad = (reason: string) => new RepositoryFormatError(where, reason);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('not valid JSON');
  }
  if (isObject(value) && typeof value.format === 'number' && value.format > FORMAT_VERSION) {
    throw new UnsupportedFormatError(`${where} has format ${value.format}, newer than the supported ${FORMAT_VERSION}; upgrade VMKeep`);
  }
  if (key) value = openEnvelope(value, pointId, where, key);
  else if (isObject(value) && 'cipher' in value) throw bad('encrypted, in an unencrypted repository');
  if (!isObject(value)) throw bad('not a JSON object');
  const { format, id, createdAt, meta, disks } = value;
  if (typeof format !== 'number' || !Number.isInteger(format) || format < 1) throw bad(`invalid format ${String(format)}`);
  if (format > FORMAT_VERSION) {
    throw new UnsupportedFormatError(`${where} has format ${format}, newer than the supported ${FORMAT_VERSION}; upgrade VMKeep`);
  }
  if (id !== pointId) throw bad(`id ${JSON.stringify(id)} does not match its folder`);
  if (typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt))) throw bad('invalid createdAt');
  if (!isObject(meta)) throw bad('meta is not an object');
  if (!Array.isArray(disks)) throw bad('disks is not an array');
  const parsed = disks.map((d) => parseDisk(d, where));
  const keys = new Set(parsed.map((d) => d.key));
  if (keys.size !== parsed.length) throw bad('duplicate disk key');
  return { format: FORMAT_VERSION, id: pointId, createdAt, meta, disks: parsed };
}
