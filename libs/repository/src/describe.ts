/**
 * What a repository holds, from the repository alone: this is how a fresh appliance (empty database) or the CLI
 * lists and restores points. Every fact comes from the config, the manifests and the archive records.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { ArchiveStatus } from './archive';
import { isTempName } from './atomic';
import type { Repository } from './repository';
import { StorageChunkStore } from './storage-chunk-store';
import type { Manifest } from './types';

export interface PointDiskSummary {
  key: string;
  /** Virtual size in bytes. */
  size: number;
  /** Human label from the disk's metadata (e.g. "Hard disk 1" or an image file name), when there is one. */
  label?: string;
}

export interface PointSummary {
  id: string;
  createdAt: string;
  /** The VM's name from the point's metadata (`meta.vm.name`, or `meta.vm` when it is a string). */
  vmName?: string;
  disks: PointDiskSummary[];
  /** Sum of the disks' virtual sizes. */
  totalSize: number;
  /** Archive state, when the point is archived. */
  archive?: ArchiveStatus;
  /** The point's full metadata as stored. */
  meta: Record<string, unknown>;
}

export interface RepositoryDescription {
  id: string;
  format: number;
  createdAt: string;
  chunkSize: number;
  compression: { algorithm: string; level: number };
  encrypted: boolean;
  points: PointSummary[];
  /** With `storage: true`: stored chunks and their bytes on disk. */
  storage?: { chunks: number; bytes: number };
}

function stringAt(value: unknown, key: string): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = (value as Record<string, unknown>)[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** The VM name a point's metadata carries (the backup service writes `vm: { name }`, older callers `vm: "name"`). */
export function vmNameOf(meta: Record<string, unknown>): string | undefined {
  return typeof meta.vm === 'string' ? meta.vm : stringAt(meta.vm, 'name');
}

export function summarizePoint(manifest: Manifest, archive?: ArchiveStatus): PointSummary {
  const disks = manifest.disks.map((d) => {
    const label = stringAt(d.meta, 'label');
    return label === undefined ? { key: d.key, size: d.size } : { key: d.key, size: d.size, label };
  });
  return {
    id: manifest.id,
    createdAt: manifest.createdAt,
    vmName: vmNameOf(manifest.meta),
    disks,
    totalSize: disks.reduce((n, d) => n + d.size, 0),
    ...(archive ? { archive } : {}),
    meta: manifest.meta,
  };
}

/** Number and bytes of the stored chunks. */
async function storageOf(repo: Repository): Promise<{ chunks: number; bytes: number }> {
  if (!repo.local) {
    const chunks = await new StorageChunkStore(repo.storage).list();
    return { chunks: chunks.length, bytes: chunks.reduce((n, c) => n + c.size, 0) };
  }
  const chunksDir = repo.localStore.dir;
  let chunks = 0;
  let bytes = 0;
  for (const fan of await fs.readdir(chunksDir)) {
    const fanDir = path.join(chunksDir, fan);
    for (const name of await fs.readdir(fanDir).catch(() => [] as string[])) {
      if (isTempName(name)) continue;
      const st = await fs.stat(path.join(fanDir, name)).catch(() => undefined);
      if (!st) continue;
      chunks++;
      bytes += st.size;
    }
  }
  return { chunks, bytes };
}

export async function describeRepository(repo: Repository, opts: { storage?: boolean } = {}): Promise<RepositoryDescription> {
  const manifests = await repo.listPoints();
  const archives = new Map((await repo.archives.list()).map((a) => [a.pointId, a]));
  const { config } = repo;
  return {
    id: config.id,
    format: config.format,
    createdAt: config.createdAt,
    chunkSize: config.chunkSize,
    compression: { ...config.compression },
    encrypted: repo.encrypted,
    points: manifests.map((m) => summarizePoint(m, archives.get(m.id))),
    ...(opts.storage ? { storage: await storageOf(repo) } : {}),
  };
}
