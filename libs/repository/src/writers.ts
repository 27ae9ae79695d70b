/**
 * In-progress markers of running writers (`writers/<pointId>.json`). A marker's mtime is the writer's start on
 * the repository's file-system clock, its atime the writer's last heartbeat. Garbage collection keeps every chunk
 * written or refreshed since the oldest live writer started, and treats a marker without a heartbeat for longer
 * than its stale age as left behind by a crashed writer.
 */
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic';
import { deadOwnerReason, readNoAtime } from './locks';
import { isPointId } from './names';

/** How often a live writer refreshes its marker's heartbeat. */
export const WRITER_HEARTBEAT_MS = 60_000;

export interface WriterMarker {
  pointId: string;
  /** Start of the writer (marker mtime, file-system clock). */
  startedAtMs: number;
  /** Last heartbeat (marker atime). */
  heartbeatAtMs: number;
  /** Host, pid and start time from the marker's content (for messages); absent if unreadable. */
  owner?: { host: string; pid: number; startedAt?: string };
  /** Set when the writer certainly died: it ran on this host and its pid is gone. */
  deadReason?: string;
}

/** A running writer's marker, as its writer sees it. */
export interface WriterHandle {
  /** False once garbage collection removed the marker as stale. */
  isPresent(): Promise<boolean>;
  release(): Promise<void>;
}

/** Where writer markers live: a folder (WriterMarkers) or object storage (StorageWriterMarkers). */
export interface WriterMarkerStore {
  create(pointId: string): Promise<WriterHandle>;
  list(): Promise<WriterMarker[]>;
  remove(pointId: string): Promise<void>;
}

const SUFFIX = '.json';

function parseOwner(text: string): WriterMarker['owner'] {
  try {
    const v = JSON.parse(text) as { host?: unknown; pid?: unknown; startedAt?: unknown };
    if (typeof v.host !== 'string' || typeof v.pid !== 'number') return undefined;
    return { host: v.host, pid: v.pid, startedAt: typeof v.startedAt === 'string' ? v.startedAt : undefined };
  } catch {
    return undefined;
  }
}

export class WriterMarkers implements WriterMarkerStore {
  constructor(readonly dir: string) {}

  fileOf(pointId: string): string {
    return path.join(this.dir, pointId + SUFFIX);
  }

  /** Creates the marker of a starting writer and keeps its heartbeat going until release(). */
  async create(pointId: string): Promise<ActiveWriterMarker> {
    await fs.mkdir(this.dir, { recursive: true });
    const file = this.fileOf(pointId);
    const info = { pointId, host: hostname(), pid: process.pid, startedAt: new Date().toISOString() };
    await writeFileAtomic(file, JSON.stringify(info) + '\n');
    const { mtime } = await fs.stat(file);
    return new ActiveWriterMarker(file, mtime);
  }

  async list(): Promise<WriterMarker[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: WriterMarker[] = [];
    for (const name of names) {
      const pointId = name.endsWith(SUFFIX) ? name.slice(0, -SUFFIX.length) : '';
      if (!isPointId(pointId)) continue;
      const file = path.join(this.dir, name);
      let st;
      try {
        st = await fs.stat(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // finished meanwhile
        throw err;
      }
      // The content (host, pid) is read without updating the atime (O_NOATIME): a normal read would refresh it
      // (relatime) and make a dead writer's marker look alive.
      const owner = await readNoAtime(file).then(parseOwner, () => undefined);
      const deadReason = deadOwnerReason(owner);
      out.push({ pointId, startedAtMs: st.mtimeMs, heartbeatAtMs: Math.max(st.atimeMs, st.mtimeMs), owner, deadReason });
    }
    return out;
  }

  async remove(pointId: string): Promise<void> {
    await fs.rm(this.fileOf(pointId), { force: true });
  }
}

/** The marker of this process's running writer. */
export class ActiveWriterMarker implements WriterHandle {
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly file: string,
    private readonly started: Date,
  ) {
    this.timer = setInterval(() => void this.beat(), WRITER_HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Refreshes the heartbeat (atime) and keeps the start (mtime). A vanished marker is noticed by isPresent(). */
  async beat(): Promise<void> {
    await fs.utimes(this.file, new Date(), this.started).catch(() => undefined);
  }

  async isPresent(): Promise<boolean> {
    try {
      await fs.access(this.file);
      return true;
    } catch {
      return false;
    }
  }

  async release(): Promise<void> {
    clearInterval(this.timer);
    await fs.rm(this.file, { force: true });
  }
}
